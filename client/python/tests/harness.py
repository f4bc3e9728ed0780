"""Test harness: real `courier-server` processes on 127.0.0.1:0 (the binary is
$COURIER_SERVER_BIN, or the repository's target/debug/courier-server), tokens, test
data, and looks into the server's store and metrics (tests/scenarios.md, Harness)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Callable

from courier import Ready, ReceivedMessage, Subscription

#: The secret every test server signs with, so tests can mint and forge tokens.
SECRET = "test-secret-of-courier-python"

MIB = 1024 * 1024


def server_binary() -> str:
    """$COURIER_SERVER_BIN, or the debug build of this repository."""
    binary = os.environ.get("COURIER_SERVER_BIN")
    if binary:
        return binary
    built = Path(__file__).resolve().parents[3] / "target" / "debug" / "courier-server"
    if not built.exists():
        raise RuntimeError(
            f"{built} is missing: build it (cargo build -p courier-server) or set COURIER_SERVER_BIN"
        )
    return str(built)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token_with(secret: str, user: str, ttl: int = 3600) -> str:
    """An HS256 JWT for ``user`` signed with ``secret``, expiring in ``ttl`` seconds."""
    now = int(time.time())
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = _b64(json.dumps({"sub": user, "exp": now + ttl, "iat": now}).encode())
    signature = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{_b64(signature)}"


def token(user: str) -> str:
    """A valid token for ``user``."""
    return token_with(SECRET, user)


def pattern(length: int, seed: int) -> bytes:
    """``length`` bytes of deterministic pseudo-random data."""
    return random.Random(seed).randbytes(length)


def png(width: int, height: int) -> bytes:
    """A ``width`` x ``height`` RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x % 256, y % 256, 128))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def wait_until(check: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    """Polls ``check`` every 20 ms for at most ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit} s waiting for {what}")
        time.sleep(0.02)


def next_message(feed: Subscription, limit: float = 10.0) -> ReceivedMessage:
    """The next message on ``feed``, skipping ready and disconnected events."""
    deadline = time.monotonic() + limit
    while True:
        event = feed.next_event(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(event, ReceivedMessage):
            return event


def wait_ready(feed: Subscription, limit: float = 10.0) -> tuple[Ready, list[ReceivedMessage]]:
    """Waits for the feed's Ready event; returns it and the messages before it."""
    deadline = time.monotonic() + limit
    before: list[ReceivedMessage] = []
    while True:
        event = feed.next_event(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(event, Ready):
            return event, before
        if isinstance(event, ReceivedMessage):
            before.append(event)


class Server:
    """A running `courier-server serve` with a fresh data folder; stop() kills it."""

    def __init__(self, *flags: str, listen: str = "127.0.0.1:0") -> None:
        self.flags = flags
        self.data_dir = Path(tempfile.mkdtemp(prefix="courier-py-test-"))
        self.media_dir = self.data_dir / "media"
        self._start(listen)

    def _start(self, listen: str) -> None:
        env = dict(os.environ, COURIER_JWT_SECRET=SECRET, RUST_LOG="info")
        self.process = subprocess.Popen(
            [
                server_binary(),
                "serve",
                "--listen",
                listen,
                "--metrics-listen",
                "127.0.0.1:0",
                "--data-dir",
                str(self.data_dir),
                *self.flags,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        found: dict[str, str] = {}
        ready = threading.Event()
        stdout = self.process.stdout
        assert stdout is not None

        def drain() -> None:
            # Reads the listening line, then keeps draining so the server never
            # blocks on a full pipe.
            for raw in stdout:
                if not ready.is_set():
                    try:
                        line = json.loads(raw)
                    except ValueError:
                        continue
                    fields = line.get("fields", line)
                    if fields.get("message") == "courier-server listening":
                        found.update(addr=fields["addr"], metrics=fields["metrics_addr"])
                        ready.set()
                elif os.environ.get("COURIER_TEST_LOGS"):
                    print("server:", raw.decode(errors="replace").rstrip())

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(30):
            self.stop()
            raise RuntimeError("courier-server did not report its address within 30 s")
        self.addr = found["addr"]
        self.metrics_addr = found["metrics"]

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    def restart(self) -> None:
        """Kills the process (as in a crash) and starts a new one on the same address
        and data folder."""
        self.process.kill()
        self.process.wait()
        self._start(self.addr)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def metric(self, name: str) -> int:
        """One value of the Prometheus metrics endpoint."""
        with urllib.request.urlopen(f"http://{self.metrics_addr}/metrics", timeout=5) as r:
            body = r.read().decode()
        for line in body.splitlines():
            if line.startswith(name + " "):
                return int(float(line.split()[1]))
        raise AssertionError(f"metric {name} is missing from:\n{body}")

    def metric_total(self, name: str) -> int:
        """The sum of every series of a metric, whatever its labels."""
        with urllib.request.urlopen(f"http://{self.metrics_addr}/metrics", timeout=5) as r:
            body = r.read().decode()
        return sum(
            int(float(line.rsplit(" ", 1)[1]))
            for line in body.splitlines()
            if line.startswith((name + " ", name + "{"))
        )

    def stored(self) -> list[str]:
        """Every file under the media store, staging files included."""
        if not self.media_dir.exists():
            return []
        return sorted(str(p.relative_to(self.media_dir)) for p in self.media_dir.rglob("*") if p.is_file())

    def wait_in_flight(self, n: int) -> None:
        wait_until(lambda: self.metric("courier_transfers_in_flight") == n, f"{n} transfers in flight")

    def wait_stored(self, expected: list[str]) -> None:
        wait_until(lambda: self.stored() == expected, f"the store to hold {expected}")


class SlowFile:
    """A binary file object that yields ``free`` chunks at once, then one chunk per
    ``release()`` (or after 30 s): an upload whose source yields slowly."""

    def __init__(self, chunk: int, free: int) -> None:
        self._chunk = chunk
        self._free = free
        self._released = threading.Semaphore(0)
        self._count = 0

    def read(self, size: int) -> bytes:
        if self._count >= self._free:
            self._released.acquire(timeout=30)
        self._count += 1
        return pattern(min(size, self._chunk), self._count % 256)

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self._released.release()


def nats_server_binary() -> str | None:
    """$COURIER_NATS_SERVER (which the test command sets), or nats-server on the PATH."""
    binary = os.environ.get("COURIER_NATS_SERVER") or shutil.which("nats-server")
    return binary if binary and os.access(binary, os.X_OK) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """A nats-server with JetStream on 127.0.0.1 and a fresh store folder; close()
    kills it."""

    def __init__(self, binary: str) -> None:
        self.store = Path(tempfile.mkdtemp(prefix="courier-py-nats-"))
        self.port = free_port()
        self.process = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError("nats-server did not start listening within 30 s")
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        shutil.rmtree(self.store, ignore_errors=True)
