/**
 * The README's example, run as written: its first `ts` block is type-checked with
 * `tsc --strict` and run with Node against a live server, with the tokens in
 * ALICE_TOKEN and BOB_TOKEN and a cat.png in the current folder, as the README says;
 * its other `ts` blocks (the several-replicas form) are type-checked.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { Server, png, tempDir } from "./harness.js";

const run = promisify(execFile);
/** client/typescript (this file is build/test/readme.test.js). */
const PACKAGE = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

test("the README example runs as written", { timeout: 120_000 }, async () => {
  const readme = readFileSync(join(PACKAGE, "README.md"), "utf8");
  const example = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(example !== undefined, "README.md has a ts block");
  assert.ok(example.trim().split("\n").length <= 16, "the example stays short");
  // Inside the package, so that `import ... from "courier-client"` finds it.
  const dir = join(PACKAGE, "build", "readme");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "example.mts"), example);
  const tsc = join(PACKAGE, "node_modules", ".bin", "tsc");
  const flags = ["--noEmit", "--strict", "--target", "es2022", "--module", "nodenext", "--skipLibCheck"];
  await run(tsc, [...flags, "--types", "node", join(dir, "example.mts")], { cwd: PACKAGE });
  writeFileSync(join(dir, "example.mjs"), example);
  // The other ts blocks (the several-replicas form) are type-checked as written.
  const others = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].slice(1).map((m) => m[1]!);
  assert.ok(others.some((block) => block.includes("Client.connect(urls")), "the README shows several addresses");
  for (const [i, block] of others.entries()) {
    const path = join(dir, `block-${i + 2}.mts`);
    writeFileSync(path, block);
    await run(tsc, [...flags, "--types", "node", path], { cwd: PACKAGE });
  }

  const server = await Server.start();
  try {
    const cwd = tempDir();
    const picture = png(40, 30);
    writeFileSync(join(cwd, "cat.png"), picture);
    const env = {
      ...process.env,
      COURIER_SERVER: server.url,
      ALICE_TOKEN: server.token("alice"),
      BOB_TOKEN: server.token("bob"),
    };
    const { stdout } = await run(process.execPath, [join(dir, "example.mjs")], { cwd, env, timeout: 60_000 });
    assert.match(stdout, new RegExp(`${picture.length}/${picture.length}`), "progress reached the total");
    assert.match(stdout, /bob saved cat \(1\)\.png: 40x30/);
    assert.ok(readFileSync(join(cwd, "cat (1).png")).equals(picture), "bob's copy is byte-identical");
  } finally {
    await server.stop();
  }
});
