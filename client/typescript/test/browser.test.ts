/**
 * The demo page end to end in headless Chromium (Debian's /usr/bin/chromium, driven by
 * playwright-core): alice and bob log in on the page served by demo/serve.mjs, talking
 * gRPC-Web to a courier-server that allows the page's origin. Alice uploads an image
 * with the resumable API through Toxiproxy (when COURIER_TEST_TOXIPROXY names one, as
 * scripts/test does): the proxy cuts her connection mid-upload, and Resume continues
 * from the bytes the server holds; then the server itself is killed mid-upload (the
 * upload stops, its state kept in localStorage), started again on the same store, and
 * Resume completes the upload from where it stopped (resumed offset > 0). Bob's page
 * shows the image with the server's thumbnail, an `<img src>` from a signed HTTP link
 * (naturalWidth checked), and its dimensions, and downloads it; the downloaded bytes are
 * identical (SHA-256). Then alice sends a WebM that Chromium records itself (canvas +
 * MediaRecorder: no video file is committed); bob's page plays it in a `<video>` from
 * its link and seeks, which the server answers with 206 (seen by the page, and in the
 * server's `courier_http_requests_total`). Screenshots of both pages go to
 * demo/screenshots/ (git-ignored).
 */

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { type Browser, type Page, chromium } from "playwright-core";

import { Server, png, sha256, tempDir, within } from "./harness.js";

/** client/typescript, from build/test. */
const root = fileURLToPath(new URL("../../", import.meta.url));
const CHROMIUM = process.env.COURIER_CHROMIUM ?? "/usr/bin/chromium";
const SCREENSHOTS = join(root, "demo", "screenshots");

/** Starts demo/serve.mjs and returns its URL and process. */
async function serveDemo(): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [join(root, "demo", "serve.mjs"), "--port", "0"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const line = await within(
    60_000,
    "the demo server's address",
    new Promise<string>((resolve, reject) => {
      child.once("exit", (code) => reject(new Error(`demo/serve.mjs exited with ${code}`)));
      createInterface({ input: child.stdout! }).once("line", resolve);
    }),
  );
  return { url: (JSON.parse(line) as { url: string }).url, child };
}

/** A Toxiproxy proxy to `upstream` (host:port) through the API at `api`; returns its name and address. */
async function proxy(api: string, upstream: string): Promise<{ name: string; listen: string }> {
  const name = `browser-test-${process.pid}-${Date.now()}`;
  const response = await fetch(`http://${api}/proxies`, {
    method: "POST",
    body: JSON.stringify({ name, listen: "127.0.0.1:0", upstream, enabled: true }),
  });
  const body = await response.text();
  assert.ok(response.ok, `Toxiproxy: ${response.status} ${body}`);
  const created = JSON.parse(body) as { listen: string };
  return { name, listen: created.listen };
}

/** Turns a proxy on or off (off closes its open connections and refuses new ones). */
async function setProxy(api: string, name: string, enabled: boolean): Promise<void> {
  const response = await fetch(`http://${api}/proxies/${name}`, { method: "POST", body: JSON.stringify({ enabled }) });
  const body = await response.text();
  assert.ok(response.ok, `Toxiproxy: ${response.status} ${body}`);
}

/** Waits (bounded) until `#upload-status` on `page` is in `state`; returns its data attributes. */
async function uploadReaches(page: Page, states: string[], ms: number): Promise<Record<string, string>> {
  await page.waitForFunction(
    (wanted) => wanted.includes(document.getElementById("upload-status")?.dataset.state ?? ""),
    states,
    { timeout: ms, polling: 50 },
  );
  return page.evaluate(() => {
    const status = document.getElementById("upload-status")!;
    return { ...status.dataset, text: status.textContent ?? "" } as Record<string, string>;
  });
}

/**
 * Runs in the page: records `ms` of an animated canvas with MediaRecorder (VP8 WebM,
 * which Debian's Chromium has; it has no H.264) and returns the file as base64.
 */
async function recordWebm(ms: number): Promise<string> {
  const canvas = document.createElement("canvas");
  canvas.width = 320;
  canvas.height = 240;
  const context = canvas.getContext("2d")!;
  let frame = 0;
  const draw = () => {
    context.fillStyle = `hsl(${(frame * 7) % 360} 70% 50%)`;
    context.fillRect(0, 0, 320, 240);
    context.fillStyle = "#fff";
    context.font = "48px sans-serif";
    context.fillText(String(frame++), 20, 140);
  };
  draw();
  const painter = setInterval(draw, 1000 / 30);
  const recorder = new MediaRecorder(canvas.captureStream(30), { mimeType: "video/webm;codecs=vp8" });
  const chunks: Blob[] = [];
  recorder.ondataavailable = (event) => chunks.push(event.data);
  const stopped = new Promise<void>((resolve) => (recorder.onstop = () => resolve()));
  recorder.start(100);
  await new Promise((resolve) => setTimeout(resolve, ms));
  recorder.stop();
  await stopped;
  clearInterval(painter);
  const bytes = new Uint8Array(await new Blob(chunks, { type: "video/webm" }).arrayBuffer());
  let binary = "";
  for (let at = 0; at < bytes.length; at += 0x8000) binary += String.fromCharCode(...bytes.subarray(at, at + 0x8000));
  return btoa(binary);
}

/** How many HTTP media requests `server` answered with `status` (`courier_http_requests_total`). */
async function httpRequests(server: Server, status: string): Promise<number> {
  const body = await (await fetch(`http://${server.metricsAddr}/metrics`)).text();
  let total = 0;
  for (const line of body.split("\n")) {
    if (line.startsWith("courier_http_requests_total{") && line.includes(`status="${status}"`)) {
      total += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return total;
}

test(
  "the demo: a resumable upload survives a cut connection and a server crash; bob sees the thumbnail from its link, downloads identical bytes, and plays and seeks a video",
  { timeout: 240_000 },
  async (t) => {
    if (!existsSync(CHROMIUM)) {
      // run-tests installs Debian's chromium first; without it this test cannot run.
      assert.fail(`${CHROMIUM} is missing (apt-get install -y chromium)`);
    }
    const demo = await serveDemo();
    let server: Server | undefined;
    let browser: Browser | undefined;
    let cut: { name: string; listen: string } | undefined;
    const dir = tempDir("courier-ts-browser-");
    try {
      const origin = new URL(demo.url).origin;
      // Small parts, so that the crash lands mid-upload.
      server = await Server.start([
        "--cors-allow-origin",
        origin,
        // The media links' HTTP side, for fetch() from the page (<img> and <video> need no CORS).
        "--http-cors-origin",
        origin,
        "--upload-part-size",
        String(256 * 1024),
      ]);
      const live = server;
      const image = png(900, 600, true);
      const imagePath = join(dir, "noise.png");
      writeFileSync(imagePath, image);
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: [
          "--no-sandbox",
          "--headless",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
        ],
        timeout: 60_000,
      });
      // Alice goes through Toxiproxy when there is one, so that her connection can be cut.
      const toxiproxy = process.env.COURIER_TEST_TOXIPROXY || undefined;
      if (toxiproxy === undefined && process.env.COURIER_TEST_REQUIRE_TOXIPROXY) {
        assert.fail("COURIER_TEST_REQUIRE_TOXIPROXY is set but COURIER_TEST_TOXIPROXY is not");
      }
      cut = toxiproxy === undefined ? undefined : await proxy(toxiproxy, live.addr);
      if (cut === undefined) t.diagnostic("no Toxiproxy (COURIER_TEST_TOXIPROXY): only the server crash is drilled");
      const open = async (user: string, peer: string, via: string) => {
        const context = await browser!.newContext({ acceptDownloads: true, viewport: { width: 1000, height: 700 } });
        const page = await context.newPage();
        page.on("pageerror", (error) => t.diagnostic(`${user}'s page: ${error.message}`));
        const fragment = new URLSearchParams({ server: via, token: live.token(user), peer });
        await page.goto(`${demo.url}#${fragment}`);
        await page.waitForSelector('#feed-status[data-state="live"]', { timeout: 30_000 });
        return { context, page };
      };
      const alice = await open("alice", "bob", cut === undefined ? live.url : `http://${cut.listen}`);
      const bob = await open("bob", "alice", live.url);

      // A slow uplink, so that the crash lands mid-upload: 256 KiB/s.
      const cdp = await alice.context.newCDPSession(alice.page);
      await cdp.send("Network.enable");
      await cdp.send("Network.emulateNetworkConditions", {
        offline: false,
        latency: 0,
        downloadThroughput: -1,
        uploadThroughput: 256 * 1024,
      });
      await alice.page.setInputFiles("#file", imagePath);
      await alice.page.click("#upload");
      const committedPast = (bytes: number) =>
        alice.page.waitForFunction(
          (n) => Number(document.getElementById("upload-status")?.dataset.committed ?? 0) > n,
          bytes,
          { timeout: 60_000, polling: 20 },
        );
      if (cut !== undefined && toxiproxy !== undefined) {
        // The connection cut mid-upload: the upload stops; Resume continues from the server's bytes.
        await committedPast(0);
        await setProxy(toxiproxy, cut.name, false);
        const stopped = await uploadReaches(alice.page, ["interrupted", "failed"], 90_000);
        assert.equal(stopped.state, "interrupted", stopped.text);
        t.diagnostic(`connection cut after ${stopped.committed} bytes`);
        await setProxy(toxiproxy, cut.name, true);
        await alice.page.click("#resume");
        await committedPast(Number(stopped.committed));
        const runStart = Number(await alice.page.locator("#upload-status").getAttribute("data-run-start"));
        assert.ok(runStart > 0, "after the cut the upload continued from the bytes the server held");
        assert.ok(runStart <= Number(stopped.committed));
      }
      // Another part stored, then the server dies.
      await committedPast(Number((await alice.page.locator("#upload-status").getAttribute("data-committed")) ?? 0));
      await live.crash();
      const broken = await uploadReaches(alice.page, ["interrupted", "failed"], 90_000);
      assert.equal(broken.state, "interrupted", await alice.page.locator("#upload-status").textContent() ?? "");
      t.diagnostic(`interrupted after ${broken.committed} of ${image.length} bytes`);
      assert.ok(Number(broken.committed) < image.length, "the crash came before the last part");
      const state = await alice.page.evaluate(() =>
        Object.keys(localStorage).filter((k) => k.startsWith("courier-upload:")),
      );
      assert.equal(state.length, 1, "the upload's state is kept in localStorage");

      await live.revive();
      await cdp.send("Network.emulateNetworkConditions", {
        offline: false,
        latency: 0,
        downloadThroughput: -1,
        uploadThroughput: -1,
      });
      await alice.page.click("#resume");
      const sent = await uploadReaches(alice.page, ["sent", "failed", "interrupted"], 90_000);
      assert.equal(sent.state, "sent", JSON.stringify(sent));
      const resumedFrom = Number(sent.resumedFrom);
      t.diagnostic(`resumed from ${resumedFrom} bytes of ${image.length}`);
      assert.ok(resumedFrom > 0, "the upload continued from the bytes the server held");
      assert.ok(resumedFrom < image.length);
      assert.equal(sent.sha256, sha256(image), "the stored object is byte-identical");
      const left = await alice.page.evaluate(() =>
        Object.keys(localStorage).filter((k) => k.startsWith("courier-upload:")),
      );
      assert.deepEqual(left, [], "the state is removed after the commit");

      // Bob's page: the image with the server's thumbnail and its dimensions.
      const row = bob.page.locator(`.message[data-media-id="${sent.mediaId}"]`);
      await row.waitFor({ timeout: 60_000 });
      const thumbnail = row.locator("img.thumbnail[data-width]");
      await thumbnail.waitFor({ timeout: 30_000 });
      const thumbSize = [Number(await thumbnail.getAttribute("data-width")), Number(await thumbnail.getAttribute("data-height"))];
      assert.equal(thumbSize[0], 320, "the longer side rounded up to 320");
      assert.ok(Math.abs(thumbSize[1]! - 213.3) < 1, `the aspect kept: ${thumbSize}`);
      const shown = await thumbnail.evaluate((img) => [(img as HTMLImageElement).naturalWidth, (img as HTMLImageElement).naturalHeight]);
      assert.ok(shown[0]! > 0, "the image loaded (naturalWidth > 0)");
      assert.deepEqual(shown, thumbSize, "the thumbnail decodes in the browser");
      const src = (await thumbnail.getAttribute("src")) ?? "";
      assert.ok(src.startsWith(`${live.url}/media/v1/${sent.mediaId}?`), `an <img src> from a media link: ${src}`);
      assert.match(src, /[?&]edge=320(&|$)/, "the link names the 320 thumbnail");
      const dims = row.locator(".dims");
      assert.deepEqual([await dims.getAttribute("data-width"), await dims.getAttribute("data-height")], ["900", "600"]);

      // The download: through DownloadMedia (server streaming) into a file the browser saves.
      const [download] = await Promise.all([
        bob.page.waitForEvent("download", { timeout: 60_000 }),
        row.locator("button.download").click(),
      ]);
      const saved = join(dir, "downloaded.png");
      await download.saveAs(saved);
      assert.equal(download.suggestedFilename(), "noise.png");
      assert.equal(sha256(readFileSync(saved)), sha256(image), "downloaded bytes are identical");

      // A video: a WebM made here by Chromium itself (canvas + MediaRecorder; nothing
      // committed), sent by alice as a file; bob's page plays it from its link and seeks.
      const webm = await alice.page.evaluate(recordWebm, 2_000);
      t.diagnostic(`recorded a WebM of ${webm.length} base64 characters`);
      const ranges: string[] = [];
      bob.page.on("response", (response) => {
        if (response.url().includes("/media/v1/") && response.status() === 206) {
          ranges.push(response.headers()["content-range"] ?? "");
        }
      });
      const servedBefore = await httpRequests(live, "206");
      await alice.page.setInputFiles("#file", { name: "clip.webm", mimeType: "video/webm", buffer: Buffer.from(webm, "base64") });
      await alice.page.click("#upload");
      await alice.page.waitForFunction(
        (first) => {
          const status = document.getElementById("upload-status")!;
          return status.dataset.state === "sent" && status.dataset.mediaId !== first;
        },
        sent.mediaId,
        { timeout: 60_000, polling: 50 },
      );
      const clipId = await alice.page.locator("#upload-status").getAttribute("data-media-id");
      const clip = bob.page.locator(`.message[data-media-id="${clipId}"] video`);
      await clip.waitFor({ timeout: 30_000 });
      const seeked = await clip.evaluate(
        (element) =>
          new Promise<{ time: number; src: string }>((resolve, reject) => {
            const video = element as HTMLVideoElement;
            const timer = setTimeout(() => reject(new Error(`no seek: readyState ${video.readyState}, error ${video.error?.message}`)), 30_000);
            const seek = () => {
              video.addEventListener(
                "seeked",
                () => {
                  clearTimeout(timer);
                  resolve({ time: video.currentTime, src: video.currentSrc });
                },
                { once: true },
              );
              video.currentTime = 1.2;
            };
            if (video.readyState >= 1) seek();
            else video.addEventListener("loadedmetadata", seek, { once: true });
            video.addEventListener("error", () => reject(new Error(`the video failed: ${video.error?.message}`)), { once: true });
          }),
      );
      t.diagnostic(`the video seeked to ${seeked.time} s; 206 answers seen by the page: ${JSON.stringify(ranges)}`);
      assert.ok(seeked.src.startsWith(`${live.url}/media/v1/${clipId}?`), `the <video> plays from a media link: ${seeked.src}`);
      assert.ok(Math.abs(seeked.time - 1.2) < 0.5, `the video is at the time asked: ${seeked.time}`);
      assert.ok(ranges.length > 0, "the page saw a 206 (a byte range) for the video");
      assert.ok((await httpRequests(live, "206")) > servedBefore, "the server counted the 206 it served");

      mkdirSync(SCREENSHOTS, { recursive: true });
      await alice.page.screenshot({ path: join(SCREENSHOTS, "alice.png"), fullPage: true });
      await bob.page.screenshot({ path: join(SCREENSHOTS, "bob.png"), fullPage: true });
      t.diagnostic(`screenshots: ${join(SCREENSHOTS, "alice.png")}, ${join(SCREENSHOTS, "bob.png")}`);
    } finally {
      await browser?.close();
      demo.child.kill();
      if (cut !== undefined && process.env.COURIER_TEST_TOXIPROXY) {
        await fetch(`http://${process.env.COURIER_TEST_TOXIPROXY}/proxies/${cut.name}`, { method: "DELETE" }).catch(() => {});
      }
      await server?.stop();
    }
  },
);
