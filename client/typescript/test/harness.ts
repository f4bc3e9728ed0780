/**
 * The test harness of tests/scenarios.md: real `courier-server` processes started on
 * 127.0.0.1:0 from `$COURIER_SERVER_BIN`, tokens minted with `courier-server token`,
 * the store and the metrics looked at from outside, and deterministic test data.
 *
 * @module
 */

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { createInterface } from "node:readline";
import { deflateSync } from "node:zlib";

/** The secret that test servers sign tokens with. */
const SECRET = "courier-typescript-tests-secret";

/** The `courier-server` binary. */
export function serverBinary(): string {
  const bin = process.env.COURIER_SERVER_BIN;
  if (!bin) throw new Error("set COURIER_SERVER_BIN to the courier-server binary (scripts/test does)");
  return bin;
}

/** A temporary folder, removed by the returned function. */
export function tempDir(prefix = "courier-ts-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Sleeps `ms` milliseconds. */
export const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Every server process still running, killed if the test process exits first. */
const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** A running `courier-server serve`; {@link Server.stop} kills it and removes its data. */
export class Server {
  /** The gRPC address, host:port. */
  addr = "";
  /** The metrics address, host:port. */
  metricsAddr = "";
  /** The process. */
  #child: ChildProcess | undefined;
  /** Tokens minted so far, by user. */
  readonly #tokens = new Map<string, string>();

  private constructor(
    /** The data folder (its `media` folder is the store). */
    readonly dataDir: string,
    /** Extra flags. */
    readonly flags: readonly string[],
  ) {}

  /** Starts a server with extra `flags` and waits for its listening line. */
  static async start(flags: readonly string[] = []): Promise<Server> {
    const server = new Server(tempDir("courier-ts-server-"), flags);
    await server.#spawn("127.0.0.1:0");
    return server;
  }

  async #spawn(listen: string): Promise<void> {
    const child = spawn(
      serverBinary(),
      ["serve", "--listen", listen, "--metrics-listen", "127.0.0.1:0", "--data-dir", this.dataDir, ...this.flags],
      { env: { ...process.env, COURIER_JWT_SECRET: SECRET, RUST_LOG: "info" }, stdio: ["ignore", "pipe", "inherit"] },
    );
    this.#child = child;
    running.add(child);
    child.once("exit", () => running.delete(child));
    const lines = createInterface({ input: child.stdout! });
    // Reads the log until the listening line, then keeps draining it so that the
    // server never blocks on a full pipe.
    const listening = new Promise<{ addr: string; metrics_addr: string }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the server did not report its address in 30 s")), 30_000);
      child.once("error", reject);
      child.once("exit", (code) => reject(new Error(`courier-server exited with ${code} before listening`)));
      lines.on("line", (line) => {
        if (process.env.COURIER_TEST_LOGS) console.error(`server: ${line}`);
        if (!line.includes("courier-server listening")) return;
        clearTimeout(timer);
        resolve(JSON.parse(line));
      });
    });
    const { addr, metrics_addr } = await listening;
    this.addr = addr;
    this.metricsAddr = metrics_addr;
  }

  /** The server's URL. */
  get url(): string {
    return `http://${this.addr}`;
  }

  /** A token for `user`, minted with `courier-server token`. */
  token(user: string): string {
    let token = this.#tokens.get(user);
    if (token === undefined) {
      token = execFileSync(serverBinary(), ["token", "--user", user, "--ttl", "1h"], {
        env: { ...process.env, COURIER_JWT_SECRET: SECRET },
        encoding: "utf8",
      }).trim();
      this.#tokens.set(user, token);
    }
    return token;
  }

  /** Kills the process (as a crash does) and starts a new one on the same address and data. */
  async restart(): Promise<void> {
    await this.#kill();
    await this.#spawn(this.addr);
  }

  /** Kills the process (as a crash does), keeping its data; {@link Server.revive} starts it again. */
  async crash(): Promise<void> {
    await this.#kill();
  }

  /** Starts the server again on the same address and data after {@link Server.crash}. */
  async revive(): Promise<void> {
    await this.#spawn(this.addr);
  }

  async #kill(): Promise<void> {
    const child = this.#child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
  }

  /** Kills the server and removes its data folder. */
  async stop(): Promise<void> {
    await this.#kill();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** One value from the metrics endpoint. */
  async metric(name: string): Promise<number> {
    const body = await (await fetch(`http://${this.metricsAddr}/metrics`)).text();
    for (const line of body.split("\n")) {
      if (line.startsWith(`${name} `)) return Number(line.slice(name.length + 1).trim());
    }
    throw new Error(`metric ${name} is missing from:\n${body}`);
  }

  /** The sum of a metric over all its labels (`name{...} value` and `name value` lines). */
  async metricTotal(name: string): Promise<number> {
    const body = await (await fetch(`http://${this.metricsAddr}/metrics`)).text();
    let total = 0;
    for (const line of body.split("\n")) {
      if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
      total += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
    return total;
  }

  /** Waits (at most 10 s) until `courier_transfers_in_flight` is `n`. */
  async waitInFlight(n: number): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const now = await this.metric("courier_transfers_in_flight");
      if (now === n) return;
      if (Date.now() > deadline) throw new Error(`transfers in flight stayed ${now}, expected ${n}`);
      await pause(20);
    }
  }

  /** Every file under the local media store (objects, metadata and staging files). */
  stored(): string[] {
    const root = join(this.dataDir, "media");
    const files: string[] = [];
    const walk = (dir: string) => {
      let entries: string[];
      try {
        entries = readdirSync(dir);
      } catch {
        return;
      }
      for (const entry of entries) {
        const path = join(dir, entry);
        if (statSync(path).isDirectory()) walk(path);
        else files.push(relative(root, path));
      }
    };
    walk(root);
    return files.sort();
  }

  /** Waits (at most 10 s) until the store holds exactly `expected`. */
  async waitStored(expected: readonly string[]): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const now = this.stored();
      if (JSON.stringify(now) === JSON.stringify(expected)) return;
      if (Date.now() > deadline) throw new Error(`the store holds ${JSON.stringify(now)}, expected ${JSON.stringify(expected)}`);
      await pause(50);
    }
  }
}

/** `n` bytes of deterministic pseudo-random data (xorshift32), different for each `seed`. */
export function pattern(n: number, seed: number): Buffer {
  const bytes = Buffer.alloc(n);
  let x = (seed * 2654435761 + 1) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

/** The SHA-256 of `bytes`, lowercase hex. */
export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** The CRC-32 of PNG chunks. */
function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** A `width`×`height` RGB PNG with a gradient, or with noise (which does not compress: about 3 bytes a pixel). */
export function png(width: number, height: number, noise = false): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // RGB
  const rows = Buffer.alloc(height * (1 + width * 3));
  for (let y = 0; y < height; y++) {
    const row = y * (1 + width * 3);
    for (let x = 0; x < width; x++) {
      rows[row + 1 + x * 3] = (x * 255) / width;
      rows[row + 2 + x * 3] = (y * 255) / height;
      rows[row + 3 + x * 3] = 128;
    }
    if (noise) pattern(width * 3, y + 1).copy(rows, row + 1);
  }
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([
    signature,
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(rows)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** Resolves with `promise`, or rejects after `ms` saying what did not happen. */
export function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A free TCP port on 127.0.0.1 (bound, then released). */
export async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * A nats-server with JetStream on 127.0.0.1 (`-js -a 127.0.0.1 -p PORT -sd DIR`, as
 * tests/scenarios.md says), from `$COURIER_NATS_SERVER` or `nats-server` on the PATH;
 * {@link Nats.stop} kills it and removes its store.
 */
export class Nats {
  private constructor(
    /** `nats://127.0.0.1:PORT`. */
    readonly url: string,
    readonly child: ChildProcess,
    readonly dir: string,
  ) {}

  /** The binary: `$COURIER_NATS_SERVER`, else `nats-server` on the PATH, else undefined. */
  static binary(): string | undefined {
    const named = process.env.COURIER_NATS_SERVER;
    if (named) return existsSync(named) ? named : undefined;
    for (const dir of (process.env.PATH ?? "").split(":")) {
      const path = join(dir, "nats-server");
      if (dir && existsSync(path)) return path;
    }
    return undefined;
  }

  /** Starts it and waits (at most 20 s) until JetStream answers its health check. */
  static async start(binary: string): Promise<Nats> {
    const [port, monitor] = [await freePort(), await freePort()];
    const dir = tempDir("courier-ts-nats-");
    const child = spawn(
      binary,
      ["-js", "-a", "127.0.0.1", "-p", String(port), "-m", String(monitor), "-sd", dir],
      { stdio: ["ignore", "ignore", process.env.COURIER_TEST_LOGS ? "inherit" : "ignore"] },
    );
    running.add(child);
    child.once("exit", () => running.delete(child));
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        const health = await fetch(`http://127.0.0.1:${monitor}/healthz?js-enabled-only=true`);
        if (health.ok) break;
      } catch {
        // not listening yet
      }
      if (child.exitCode !== null) throw new Error(`nats-server exited with ${child.exitCode}`);
      if (Date.now() > deadline) throw new Error("nats-server was not healthy within 20 s");
      await pause(50);
    }
    return new Nats(`nats://127.0.0.1:${port}`, child, dir);
  }

  /** Kills it and removes its store. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once("exit", resolve));
      this.child.kill("SIGKILL");
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
