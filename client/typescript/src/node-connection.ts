/**
 * The Node transport: one HTTP/2 session per server speaking gRPC (connect-node's gRPC
 * transport, no proxy; connect-node has no load balancer, so a client of several
 * replicas keeps one session each and `Connection` rotates calls over them), opened
 * at connect time with retries while no server can be reached.
 *
 * @module
 */

import { Code, ConnectError } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

import { type ClientOptions, Connection, describe, retry } from "./connection.js";
import { UnavailableError } from "./errors.js";

/**
 * Opens the HTTP/2 connection to `urls` (one server, or several replicas of one
 * deployment): the first that answers is connected at once, retrying with backoff
 * while none can be reached; the others connect on their first call.
 */
export async function openNode(urls: string | readonly string[], token: string, options: ClientOptions): Promise<Connection> {
  const { origins, settings } = Connection.check(urls, token, options);
  // https:// is TLS with Node's roots; the windows let a download run at full speed.
  const sessions = new Map(
    origins.map((origin) => [
      origin,
      new Http2SessionManager(origin, {}, { settings: { initialWindowSize: 4 * 1024 * 1024 } }),
    ]),
  );
  await retry(settings, async () => {
    let failed: { origin: string; session: Http2SessionManager } | undefined;
    for (const [origin, session] of sessions) {
      if ((await connectWithin(session, settings.deadlineMs)) !== "error") return;
      failed = { origin, session };
    }
    const which = sessions.size === 1 ? failed!.origin : `any of ${[...sessions.keys()].join(", ")}`;
    throw new UnavailableError(`cannot reach ${which}: ${describe(failed!.session.error())}`, {
      cause: failed!.session.error(),
    });
  });
  return new Connection(
    origins,
    token,
    settings,
    (origin, interceptors) =>
      createGrpcTransport({ baseUrl: origin, sessionManager: sessions.get(origin)!, interceptors }),
    () => {
      for (const session of sessions.values()) session.abort();
    },
  );
}

/**
 * `session.connect()`, given up after `ms`: connect-node 2.1 (pinned because it is the
 * last to support Node.js 20) has no connect timeout of its own (2.2's
 * `connectTimeoutMs`), so a host that never answers would hold the connect forever.
 * Aborting a connecting session rejects its connection, and `session.error()` is then
 * the reason given here.
 */
async function connectWithin(session: Http2SessionManager, ms: number): ReturnType<Http2SessionManager["connect"]> {
  const timer = setTimeout(
    () => session.abort(new ConnectError(`no answer within ${ms} ms`, Code.Unavailable)),
    ms,
  );
  try {
    return await session.connect();
  } finally {
    clearTimeout(timer);
  }
}
