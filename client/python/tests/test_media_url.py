"""Scenario 14 of tests/scenarios.md, media_url (issue 29): `media_url` links fetched with
Python's own HTTP client (urllib, no token), on the sync and asyncio clients, and the
interop client's `url` line, against a real server."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from email.message import Message

import pytest

from courier import (
    AsyncClient,
    Client,
    NotAnImageError,
    NotFoundError,
)
from harness import Server, pattern, png, token
from test_thumbnail import jpeg_size

KIB = 1024


def get(url: str, **headers: str) -> tuple[int, Message, bytes]:
    """A plain HTTP GET: its status, headers and body (an error status included)."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_media_url(server: Server) -> None:
    data = pattern(300 * KIB, 29)
    with Client(server.url, token("alice")) as alice:
        file = alice.upload_file(data, file_name="report.bin")
        image = alice.upload_image(png(200, 100), file_name="wide.png")
        url, expire_time = alice.media_url(file.media_id)
        assert url.startswith(f"http://{server.addr}/"), url
        now = datetime.now(timezone.utc)
        assert now < expire_time <= now + timedelta(minutes=5, seconds=5), expire_time

        # The whole file, with no token.
        status, headers, body = get(url)
        assert status == 200
        assert body == data
        assert headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
        assert headers["X-Content-Type-Options"] == "nosniff"
        # A single range.
        status, headers, body = get(url, Range="bytes=262000-270000")
        assert status == 206
        assert body == data[262000:270001]
        assert headers["Content-Range"] == f"bytes 262000-270000/{len(data)}"
        # A conditional GET of what the client holds.
        status, _, body = get(url, **{"If-None-Match": f'"{hashlib.sha256(data).hexdigest()}"'})
        assert (status, body) == (304, b"")

        # A thumbnail link, and the refusals.
        thumb_url, _ = alice.media_url(image.media_id, max_edge=90)
        status, headers, body = get(thumb_url)
        assert status == 200
        assert headers["Content-Type"] == "image/jpeg"
        assert jpeg_size(body) == (96, 48)
        with pytest.raises(NotAnImageError):
            alice.media_url(file.media_id, max_edge=90)
        with pytest.raises(NotFoundError):
            alice.media_url("0" * 32)

        # A short-lived link is gone once it has expired.
        short = alice.media_url(file.media_id, lifetime=1)
        assert short.expire_time <= datetime.now(timezone.utc) + timedelta(seconds=2)
        assert get(short.url)[0] == 200
        time.sleep(max(0.0, (short.expire_time - datetime.now(timezone.utc)).total_seconds()) + 1.1)
        assert get(short.url)[0] == 410


@pytest.mark.asyncio
async def test_media_url_async(server: Server) -> None:
    data = pattern(10 * KIB, 30)
    async with AsyncClient(server.url, token("alice")) as alice:
        file = await alice.upload_file(data, file_name="notes.bin")
        link = await alice.media_url(file.media_id, lifetime=timedelta(minutes=1))
        assert link.expire_time <= datetime.now(timezone.utc) + timedelta(seconds=65)
        assert get(link.url)[2] == data


def test_interop_url(server: Server) -> None:
    data = pattern(20 * KIB, 31)
    with Client(server.url, token("alice")) as alice:
        file = alice.upload_file(data, file_name="notes.bin")
    env = dict(os.environ, COURIER_SERVER=server.url, COURIER_TOKEN=token("bob"))

    def url(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "courier.interop", "url", file.media_id, *args],
            env=env, capture_output=True, text=True, timeout=60,
        )

    refused = url("--max-edge", "90")
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["error"]["reason"] == "NOT_AN_IMAGE"
    assert url("--max-edge", "-1").returncode == 2
    assert url("--ttl", "soon").returncode == 2
    done = url("--ttl", "90s")
    assert done.returncode == 0, done.stderr
    [line] = [json.loads(text) for text in done.stdout.splitlines()]
    assert set(line) == {"url", "expire_time"}
    # RFC 3339, UTC, whole seconds, as the Rust CLI prints it.
    expires = datetime.strptime(line["expire_time"], "%Y-%m-%dT%H:%M:%SZ")
    now = datetime.now(timezone.utc)
    assert now < expires.replace(tzinfo=timezone.utc) <= now + timedelta(seconds=91)
    assert get(line["url"])[2] == data
    status, _, body = get(line["url"], Range="bytes=100-199")
    assert (status, body) == (206, data[100:200])
