#!/usr/bin/env node
// The demo's dev server: bundles demo/app.ts (and the browser client it imports) with
// esbuild into memory, then serves index.html and app.js on 127.0.0.1.
//
//   node demo/serve.mjs [--port N]      (0, the default, picks a free port)
//
// Prints `{"url": "http://127.0.0.1:PORT/"}` on stdout once it listens. Point a
// courier-server at it with `--cors-allow-origin http://127.0.0.1:PORT`, then open
// `URL#server=http://127.0.0.1:50051&token=TOKEN&peer=bob` (or paste them in the page).

import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({ options: { port: { type: "string", default: "0" } } });

// platform "browser": a Node built-in anywhere on the page's import path fails the build.
const bundle = await build({
  entryPoints: [join(here, "app.ts")],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  sourcemap: false,
  write: false,
  logLevel: "warning",
});
const app = bundle.outputFiles[0].contents;
const index = await readFile(join(here, "index.html"));

const files = {
  "/": { type: "text/html; charset=utf-8", body: index },
  "/index.html": { type: "text/html; charset=utf-8", body: index },
  "/app.js": { type: "text/javascript; charset=utf-8", body: app },
};

const server = createServer((request, response) => {
  const path = new URL(request.url ?? "/", "http://x").pathname;
  if (path === "/favicon.ico") {
    response.writeHead(204).end();
    return;
  }
  const file = files[path];
  if (request.method !== "GET" || file === undefined) {
    response.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    return;
  }
  response.writeHead(200, { "content-type": file.type, "cache-control": "no-store" }).end(file.body);
});
server.listen(Number(values.port), "127.0.0.1", () => {
  const { port } = server.address();
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}/`, app_bytes: app.length })}\n`);
});
for (const signal of ["SIGINT", "SIGTERM"]) process.once(signal, () => server.close(() => process.exit(0)));
