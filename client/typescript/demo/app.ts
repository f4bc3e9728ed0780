/**
 * The browser demo of courier (client/typescript/demo): log in with a token, send an
 * image or a video to a peer with a resumable upload (progress, pause, resume, cancel;
 * the upload's state survives a reload in localStorage), and see what arrives on the
 * live feed: an image as its server thumbnail in an `<img src>` from a signed HTTP
 * link (GetMediaUrl), with its dimensions and a link to the full image; a video in a
 * `<video>` that plays and seeks from its link (byte ranges); and a button that
 * downloads either (DownloadMedia, server streaming). The calls go over gRPC-Web, the
 * links over plain HTTP, both to the courier server's own port.
 *
 * `#server=URL&token=TOKEN&peer=NAME` in the page's address logs in at once (the
 * end-to-end test uses it).
 */

import {
  BrowserClient,
  type CourierError,
  type Media,
  type ReceivedMessage,
  type ResumableResult,
  type Transfer,
  fileMessage,
  imageMessage,
  sha256Hex,
  toCourierError,
} from "../src/browser.js";

/** The element with `id`, of type `T`. */
function $<T extends HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`no #${id}`);
  return element as T;
}

const ui = {
  server: $<HTMLInputElement>("server"),
  token: $<HTMLTextAreaElement>("token"),
  login: $<HTMLButtonElement>("login-button"),
  loginStatus: $<HTMLDivElement>("login-status"),
  who: $<HTMLSpanElement>("who"),
  feedStatus: $<HTMLSpanElement>("feed-status"),
  peer: $<HTMLInputElement>("peer"),
  file: $<HTMLInputElement>("file"),
  upload: $<HTMLButtonElement>("upload"),
  pause: $<HTMLButtonElement>("pause"),
  resume: $<HTMLButtonElement>("resume"),
  cancel: $<HTMLButtonElement>("cancel"),
  progress: $<HTMLProgressElement>("progress"),
  uploadStatus: $<HTMLDivElement>("upload-status"),
  messages: $<HTMLDivElement>("messages"),
};

/** The logged-in client. */
let client: BrowserClient | undefined;
/** The running upload, its pause switch, and the file it uploads. */
let running: { transfer: Transfer<ResumableResult>; pause: AbortController; file: File } | undefined;
/** The file of an upload that stopped before its commit (paused or broken off). */
let unfinished: File | undefined;

/** The user a token names (its `sub` claim), for the header only: the server checks the token. */
function userOf(token: string): string {
  try {
    const payload = token.split(".")[1] ?? "";
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    return String((JSON.parse(json) as { sub?: unknown }).sub ?? "?");
  } catch {
    return "?";
  }
}

function bytes(n: number): string {
  return n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

/** Shows the upload's state in text and in data attributes (which the test reads). */
function uploadState(state: string, text: string, data: Record<string, string | number> = {}): void {
  ui.uploadStatus.dataset.state = state;
  for (const [key, value] of Object.entries(data)) ui.uploadStatus.dataset[key] = String(value);
  ui.uploadStatus.textContent = text;
  ui.uploadStatus.classList.toggle("error", state === "interrupted" || state === "failed");
  const busy = state === "hashing" || state === "uploading";
  ui.upload.disabled = busy || client === undefined;
  ui.pause.disabled = !busy;
  ui.cancel.disabled = !busy && unfinished === undefined;
  ui.resume.disabled = busy || unfinished === undefined;
}

async function logIn(): Promise<void> {
  const token = ui.token.value.trim();
  try {
    client?.close();
    client = await BrowserClient.connect(ui.server.value.trim(), token, { retries: 3 });
  } catch (error) {
    ui.loginStatus.textContent = `cannot log in: ${(error as Error).message}`;
    ui.loginStatus.classList.add("error");
    return;
  }
  ui.loginStatus.textContent = "";
  ui.who.textContent = `logged in as ${userOf(token)}`;
  ui.who.dataset.user = userOf(token);
  uploadState("idle", "");
  void listen(client);
}

/** Follows the live feed, showing every received message. */
async function listen(me: BrowserClient): Promise<void> {
  ui.feedStatus.textContent = "connecting…";
  try {
    for await (const event of me.subscribe()) {
      switch (event.type) {
        case "ready":
          ui.feedStatus.textContent = `live${event.eventsLost ? " (some events were lost)" : ""}`;
          ui.feedStatus.dataset.state = "live";
          break;
        case "disconnected":
          ui.feedStatus.textContent = `reconnecting: ${event.reason}`;
          ui.feedStatus.dataset.state = "reconnecting";
          break;
        case "reconnected":
          break;
        case "message":
          show(me, event);
          break;
      }
    }
  } catch (error) {
    ui.feedStatus.textContent = `feed ended: ${toCourierError(error).message}`;
    ui.feedStatus.dataset.state = "ended";
  }
}

/** Adds a received message to the list: an image with its thumbnail, dimensions and a download button. */
function show(me: BrowserClient, event: ReceivedMessage): void {
  const row = document.createElement("div");
  row.className = "message";
  const meta = document.createElement("div");
  meta.className = "meta";
  const from = `from ${event.from}${event.channel === null ? "" : ` in ${event.channel}`}`;
  const message = event.message;
  if (message.type === "text") {
    meta.textContent = `${from}: ${message.text}`;
  } else if (message.type === "image" || message.type === "file") {
    row.dataset.mediaId = message.mediaId;
    const title = document.createElement("div");
    title.textContent = `${from}: ${message.fileName} (${bytes(message.size)})`;
    meta.append(title);
    if (message.type === "image") {
      const dims = document.createElement("div");
      dims.className = "dims";
      dims.dataset.width = String(message.width);
      dims.dataset.height = String(message.height);
      dims.textContent = `${message.width} × ${message.height} pixels`;
      meta.append(dims);
      // The server's thumbnail through a signed HTTP link (GetMediaUrl): a plain
      // <img src>, which the browser loads, caches and decodes itself; the link to
      // the full image opens it.
      const full = document.createElement("a");
      full.target = "_blank";
      full.rel = "noopener";
      const img = document.createElement("img");
      img.className = "thumbnail";
      img.alt = `thumbnail of ${message.fileName}`;
      img.onload = () => {
        img.dataset.width = String(img.naturalWidth);
        img.dataset.height = String(img.naturalHeight);
        img.title = `server thumbnail ${img.naturalWidth} × ${img.naturalHeight}`;
      };
      img.onerror = () => (img.alt = `the thumbnail did not load`);
      full.append(img);
      row.append(full);
      me.mediaUrl(message.mediaId, { maxEdge: 320 }).then(
        (link) => (img.src = link.url),
        (error) => (img.alt = `no thumbnail: ${toCourierError(error).message}`),
      );
      me.mediaUrl(message.mediaId).then(
        (link) => (full.href = link.url),
        () => {},
      );
    } else if (isVideo(message.fileName)) {
      // A video plays from its link: the player asks for byte ranges as it seeks.
      const video = document.createElement("video");
      video.className = "video";
      video.controls = true;
      video.preload = "metadata";
      video.muted = true;
      row.append(video);
      me.mediaUrl(message.mediaId, { lifetimeMs: 60 * 60 * 1000 }).then(
        (link) => (video.src = link.url),
        (error) => (meta.append(` (no link: ${toCourierError(error).message})`)),
      );
    }
    const button = document.createElement("button");
    button.className = "download";
    button.textContent = "Download";
    const result = document.createElement("div");
    result.className = "status download-status";
    button.onclick = () => void download(me, message.mediaId, result);
    meta.append(button, result);
  } else {
    meta.textContent = `${from}: ${message.description || "raw"} (${message.payload.length} bytes)`;
  }
  row.append(meta);
  ui.messages.prepend(row);
}

/** Whether a received file is a video this page plays (by its name: WebM, MP4, Ogg). */
function isVideo(fileName: string): boolean {
  return /\.(webm|mp4|m4v|ogv)$/i.test(fileName);
}

/** Downloads `mediaId` into memory (checked against its SHA-256), then hands it to the browser as a file. */
async function download(me: BrowserClient, mediaId: string, status: HTMLDivElement): Promise<void> {
  status.textContent = "downloading…";
  try {
    const { media, bytes: data } = await me.downloadToMemory(mediaId, {
      onProgress: (p) => (status.textContent = `downloading… ${bytes(p.done)} of ${bytes(p.total)}`),
    });
    const url = URL.createObjectURL(new Blob([data as Uint8Array<ArrayBuffer>], { type: media.contentType }));
    const link = document.createElement("a");
    link.href = url;
    link.download = media.fileName;
    link.textContent = `save ${media.fileName}`;
    status.textContent = `downloaded ${bytes(media.size)}, SHA-256 ${(await sha256Hex(data)).slice(0, 16)}… `;
    status.dataset.sha256 = media.sha256;
    status.append(link);
    link.click();
  } catch (error) {
    status.textContent = `download failed: ${toCourierError(error).message}`;
    status.classList.add("error");
  }
}

/** Uploads `file` resumably (continuing a stored upload of it), then sends it to the peer. */
async function upload(file: File): Promise<void> {
  const me = client;
  if (me === undefined) return;
  const peer = ui.peer.value.trim();
  const pause = new AbortController();
  uploadState("hashing", `reading ${file.name}…`);
  let start: number | undefined;
  // An image goes as an image message (the server reads its size); anything else,
  // a video say, as a file message.
  const kind = file.type.startsWith("image/") ? "image" : "file";
  const transfer = me.uploadResumable(file, {
    kind,
    pause: pause.signal,
    onProgress: ({ done, total }) => {
      // The first report of a run is where it starts: what the server already held.
      start ??= done;
      ui.progress.max = total;
      ui.progress.value = done;
      const from = start > 0 ? `, continued from ${bytes(start)}` : "";
      uploadState("uploading", `${bytes(done)} of ${bytes(total)} stored (${Math.floor((100 * done) / total)}%)${from}`, {
        committed: done,
        total,
        runStart: start,
      });
    },
  });
  running = { transfer, pause, file };
  unfinished = file;
  let result: ResumableResult;
  try {
    result = await transfer;
  } catch (error) {
    running = undefined;
    const courier: CourierError = toCourierError(error);
    if (courier.code === "CANCELLED") {
      unfinished = undefined;
      ui.progress.value = 0;
      uploadState("cancelled", "cancelled: the server dropped the stored parts");
    } else if (courier.code === "UNAVAILABLE" || courier.code === "DEADLINE_EXCEEDED") {
      uploadState("interrupted", `interrupted (${courier.code}): ${courier.message}\nResume continues from what the server holds.`);
    } else {
      uploadState("failed", `failed (${courier.code}${courier.reason ? `, ${courier.reason}` : ""}): ${courier.message}`);
    }
    return;
  }
  running = undefined;
  if (result.status === "paused") {
    uploadState("paused", `paused at ${bytes(result.committedSize)}; Resume continues from there`, {
      committed: result.committedSize,
    });
    return;
  }
  unfinished = undefined;
  const media: Media = result.media;
  const resumed = result.resumedFrom > 0 ? `, resumed from ${bytes(result.resumedFrom)}` : "";
  try {
    await me.sendPeerMessage(peer, kind === "image" ? imageMessage(media) : fileMessage(media), { offline: true });
  } catch (error) {
    uploadState("failed", `uploaded, but sending failed: ${toCourierError(error).message}`);
    return;
  }
  uploadState("sent", `sent ${media.fileName} (${media.width} × ${media.height}) to ${peer}${resumed}`, {
    mediaId: media.mediaId,
    resumedFrom: result.resumedFrom,
    sha256: media.sha256,
  });
}

ui.login.onclick = () => void logIn();
ui.upload.onclick = () => {
  const file = ui.file.files?.[0];
  if (file === undefined) {
    uploadState("idle", "pick a file first");
    return;
  }
  void upload(file);
};
ui.pause.onclick = () => running?.pause.abort();
ui.resume.onclick = () => {
  if (unfinished !== undefined) void upload(unfinished);
};
ui.cancel.onclick = async () => {
  if (running !== undefined) {
    running.transfer.cancel();
  } else if (unfinished !== undefined && client !== undefined) {
    // A paused or broken-off upload: the server drops its parts, the state goes.
    try {
      await client.discardUpload(unfinished);
    } catch (error) {
      uploadState("failed", `cancel failed: ${toCourierError(error).message}`);
      return;
    }
    unfinished = undefined;
    ui.progress.value = 0;
    uploadState("cancelled", "cancelled: the server dropped the stored parts");
  }
};

// Log in from the address's fragment: #server=URL&token=TOKEN&peer=NAME.
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("server")) ui.server.value = fragment.get("server")!;
if (fragment.get("peer")) ui.peer.value = fragment.get("peer")!;
if (fragment.get("token")) {
  ui.token.value = fragment.get("token")!;
  void logIn();
}
