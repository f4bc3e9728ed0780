#!/usr/bin/env python3
"""An example upload hook for courier-server (`--upload-hook`), standard library only.

It verifies each request's Standard Webhooks signature and timestamp (more than
5 minutes off: refused), fetches the uploaded bytes through the short-lived link in
the request, and answers a verdict:

- reject the EICAR anti-virus test file (recognised by its SHA-256, so that this
  file does not carry the test string itself);
- reject images of more than --max-pixels pixels (width x height from the record);
- with --clamd HOST:PORT, reject what ClamAV's clamd finds (INSTREAM);
- accept everything else.

`moderate()` shows where an image-moderation API plugs in (answer "quarantine" for
content a person should look at). Run it:

    COURIER_UPLOAD_HOOK_SECRET=whsec_... python3 scanner.py --listen 127.0.0.1:8099

and start courier-server with `--upload-hook http://127.0.0.1:8099/ --upload-hook-secret
whsec_...` (the same secret). See README "Upload hook".
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import socket
import struct
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The SHA-256 of the 68-byte EICAR test string.
EICAR_SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
# The largest request body read, and the most bytes fetched through a link.
MAX_REQUEST = 64 * 1024
MAX_FETCH = 256 * 1024 * 1024
# How far a request's timestamp may be from now.
MAX_SKEW = 5 * 60


def keys_of(secrets):
    """The HMAC keys of `whsec_<base64>` secrets."""
    keys = []
    for secret in secrets:
        secret = secret.strip()
        if not secret.startswith("whsec_"):
            sys.exit("scanner: a secret must start with whsec_")
        keys.append(base64.b64decode(secret[len("whsec_"):]))
    return keys


def signed(keys, headers, body, now=None):
    """Whether the Standard Webhooks headers sign `body` with one of `keys`, recently."""
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "").split()
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((now or time.time()) - sent) > MAX_SKEW:
        return False
    text = f"{msg_id}.{timestamp}.".encode() + body
    for key in keys:
        expected = "v1," + base64.b64encode(hmac.new(key, text, hashlib.sha256).digest()).decode()
        if any(hmac.compare_digest(expected, s) for s in signatures):
            return True
    return False


def fetch(url, size):
    """The uploaded bytes, through the link courier gave (it lives a minute or so)."""
    if size > MAX_FETCH:
        raise ValueError(f"{size} bytes is more than this scanner fetches")
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read(size + 1)


def is_eicar(data):
    """The EICAR test file: its 68 bytes, optionally followed by whitespace."""
    return hashlib.sha256(data.rstrip()).hexdigest() == EICAR_SHA256


def clamd_instream(address, data, chunk=64 * 1024):
    """Asks clamd (ClamAV's daemon) about `data` with INSTREAM; returns the name of
    what it found, or None when clean. Raises on any other answer."""
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(b"zINSTREAM\0")
        for start in range(0, len(data), chunk):
            piece = data[start:start + chunk]
            conn.sendall(struct.pack(">I", len(piece)) + piece)
        conn.sendall(struct.pack(">I", 0))
        reply = b""
        while not reply.endswith(b"\0"):
            more = conn.recv(4096)
            if not more:
                break
            reply += more
    text = reply.rstrip(b"\0").decode(errors="replace")
    if text.endswith("OK"):
        return None
    if text.endswith("FOUND"):
        return text.removeprefix("stream: ").removesuffix(" FOUND")
    raise RuntimeError(f"clamd answered {text!r}")


def moderate(record, data):
    """Where an image-moderation API plugs in: post `data` (or the record's link) to
    it and return ("quarantine", reason) for content a person should review, or
    ("reject", reason). This example has none and returns None."""
    return None


def judge(config, record):
    """The verdict on one upload's record: (verdict, message)."""
    pixels = int(record.get("width", 0)) * int(record.get("height", 0))
    if config.max_pixels and pixels > config.max_pixels:
        return "reject", f"images may have at most {config.max_pixels} pixels; this one has {pixels}"
    data = fetch(record["fetch_url"], int(record["size"]))
    if is_eicar(data):
        return "reject", "this file is the EICAR anti-virus test file"
    if config.clamd:
        found = clamd_instream(config.clamd, data)
        if found:
            return "reject", f"the virus scanner found {found}"
    moderated = moderate(record, data)
    if moderated:
        return moderated
    return "accept", ""


def handler(config, keys):
    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length", "0"))
            if length > MAX_REQUEST:
                return self.answer(413, {"error": "request too large"})
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            if not signed(keys, headers, body):
                return self.answer(401, {"error": "bad signature or timestamp"})
            try:
                record = json.loads(body)
                verdict, message = judge(config, record)
            except Exception as e:  # a failure: courier applies --upload-hook-failure
                print(f"scanner: {e}", file=sys.stderr)
                return self.answer(500, {"error": str(e)})
            print(f"scanner: {record.get('media_id')} {record.get('owner')} -> {verdict} {message}",
                  file=sys.stderr)
            self.answer(200, {"verdict": verdict, "message": message})

        def answer(self, status, value):
            data = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return Hook


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:8099", help="HOST:PORT (port 0: any free one)")
    parser.add_argument("--secret", action="append",
                        help="a whsec_ secret (twice while rotating); default: $COURIER_UPLOAD_HOOK_SECRET, comma separated")
    parser.add_argument("--max-pixels", type=int, default=40_000_000, help="refuse larger images (0: no limit)")
    parser.add_argument("--clamd", help="HOST:PORT of a clamd to ask with INSTREAM")
    config = parser.parse_args()
    secrets = config.secret or os.environ.get("COURIER_UPLOAD_HOOK_SECRET", "").split(",")
    secrets = [s for s in secrets if s.strip()]
    if not secrets:
        sys.exit("scanner: give --secret or COURIER_UPLOAD_HOOK_SECRET")
    host, _, port = config.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), handler(config, keys_of(secrets)))
    # Scripts and tests wait for this line.
    print(f"scanner listening on {server.server_address[0]}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
