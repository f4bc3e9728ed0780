/**
 * The Node transport: one HTTP/2 session speaking gRPC (connect-node's gRPC transport,
 * no proxy), opened at connect time with retries while the server cannot be reached.
 *
 * @module
 */

import { Code, ConnectError } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

import { type ClientOptions, Connection, describe, retry } from "./connection.js";
import { UnavailableError } from "./errors.js";

/** Opens the HTTP/2 connection to `url`, retrying with backoff while it cannot be reached. */
export async function openNode(url: string, token: string, options: ClientOptions): Promise<Connection> {
  const { origin, settings } = Connection.check(url, token, options);
  // https:// is TLS with Node's roots; the windows let a download run at full speed.
  const session = new Http2SessionManager(origin, {}, { settings: { initialWindowSize: 4 * 1024 * 1024 } });
  await retry(settings, async () => {
    if ((await connectWithin(session, settings.deadlineMs)) === "error") {
      throw new UnavailableError(`cannot reach ${origin}: ${describe(session.error())}`, {
        cause: session.error(),
      });
    }
  });
  return new Connection(
    origin,
    token,
    settings,
    (interceptors) => createGrpcTransport({ baseUrl: origin, sessionManager: session, interceptors }),
    () => session.abort(),
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
