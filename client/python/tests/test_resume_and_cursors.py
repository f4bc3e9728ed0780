"""Resumable uploads (issue 15) and cursors and idempotent sends (issue 18), scenarios
10 to 12 of tests/scenarios.md, against a real server, on the sync and asyncio
clients."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from courier import (
    AsyncClient,
    Client,
    ClientOptions,
    Disconnected,
    Progress,
    ReceivedMessage,
    TextMessage,
    TransferCancelledError,
)
from harness import Server, next_message, pattern, token, wait_ready

PART = 256 * 1024


def part_server(start_server: Callable[..., Server]) -> Server:
    return start_server("--upload-part-size", str(PART))


def test_resumable_upload_pauses_resumes_and_survives_a_restart(start_server: Callable[..., Server], tmp_path: Path) -> None:
    server = part_server(start_server)
    data = pattern(2 * PART + 1000, 15)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    state = Path(str(path) + ".courier-upload")
    with Client(server.url, token("alice")) as alice:
        paused = alice.upload_resumable(path, max_parts=1)
        assert paused.media is None
        assert (paused.resumed_from, paused.committed_size) == (0, PART)
        saved = json.loads(state.read_text())
        assert saved["upload_id"] == paused.upload_id
        assert saved["server"] == server.url
        assert saved["size"] == len(data)
        assert saved["sha256"] == hashlib.sha256(data).hexdigest()
        assert saved["part_size"] == PART

    # The server restarts, and so does the client: the upload goes on from one part.
    server.restart()
    seen: list[Progress] = []
    with Client(server.url, token("alice")) as alice:
        done = alice.upload_resumable(path, progress=seen.append)
        assert done.media is not None
        assert done.upload_id == paused.upload_id
        assert done.resumed_from == PART
        assert done.media.size == len(data)
        assert done.media.sha256_hex == hashlib.sha256(data).hexdigest()
        assert not state.exists(), "the state file is removed after the commit"
        assert seen[0].done == PART and seen[-1] == Progress(len(data), len(data))
        assert all(a.done <= b.done for a, b in zip(seen, seen[1:]))
        assert alice.download_to_memory(done.media.media_id).data == data


def test_a_stale_state_file_starts_over(start_server: Callable[..., Server], tmp_path: Path) -> None:
    server = part_server(start_server)
    data = pattern(PART + 10, 16)
    path = tmp_path / "again.bin"
    path.write_bytes(data)
    state = Path(str(path) + ".courier-upload")
    with Client(server.url, token("alice")) as alice:
        paused = alice.upload_resumable(path, max_parts=1)
        saved = json.loads(state.read_text())
        saved["upload_id"] = "0" * 32  # unknown to the server: NOT_FOUND
        state.write_text(json.dumps(saved))
        done = alice.upload_resumable(path)
        assert done.resumed_from == 0 and done.upload_id != paused.upload_id
        assert done.media is not None and done.media.sha256_hex == hashlib.sha256(data).hexdigest()
        # A state file whose upload ID is malformed (INVALID_ARGUMENT) starts over too.
        alice.upload_resumable(path, max_parts=1)
        saved = json.loads(state.read_text())
        saved["upload_id"] = "not an upload id"
        state.write_text(json.dumps(saved))
        assert alice.upload_resumable(path).resumed_from == 0
        # Another user cannot resume (or see) alice's upload: it starts over too.
        alice.upload_resumable(path, max_parts=1)
    with Client(server.url, token("mallory")) as mallory:
        taken = mallory.upload_resumable(path)
        assert taken.resumed_from == 0


def test_a_cancelled_resumable_upload_leaves_nothing(start_server: Callable[..., Server], tmp_path: Path) -> None:
    server = part_server(start_server)
    path = tmp_path / "cancelled.bin"
    path.write_bytes(pattern(3 * PART, 17))
    state = Path(str(path) + ".courier-upload")
    with Client(server.url, token("alice")) as alice:
        started = time.monotonic()

        def cancel_after_first_part(progress: Progress) -> None:
            if progress.done >= PART:
                alice.cancel(transfer.request_id)

        transfer = alice.start_upload_resumable(path, progress=cancel_after_first_part)
        with pytest.raises(TransferCancelledError):
            transfer.result()
        assert time.monotonic() - started < 10
        assert not state.exists()


def test_async_resumable_upload(start_server: Callable[..., Server], tmp_path: Path) -> None:
    server = part_server(start_server)
    data = pattern(PART + PART // 2, 18)
    path = tmp_path / "async.bin"
    path.write_bytes(data)

    async def run() -> None:
        async with AsyncClient(server.url, token("alice")) as alice:
            paused = await alice.upload_resumable(path, max_parts=1)
            assert paused.media is None and paused.committed_size == PART
            done = await alice.upload_resumable(path)
            assert done.resumed_from == PART
            assert done.media is not None and done.media.size == len(data)

    asyncio.run(run())


def test_subscribe_after_a_cursor_gets_what_was_missed(server: Server) -> None:
    with Client(server.url, token("alice")) as alice, Client(server.url, token("bob")) as bob:
        alice.join_channel("team")
        bob.join_channel("team")
        with bob.subscribe() as feed:
            first, _ = wait_ready(feed)
            assert not first.events_lost
            alice.send_peer_message("bob", "one")
            alice.send_channel_message("team", "two")
            one, two = next_message(feed), next_message(feed)
            assert [m.message for m in (one, two)] == [TextMessage("one"), TextMessage("two")]
            assert 0 < one.cursor < two.cursor
            assert feed.cursor == two.cursor
        # bob is away: the peer message is cached (offline), the channel one is logged.
        alice.send_peer_message("bob", "three", offline=True)
        alice.send_channel_message("team", "four")
        with bob.subscribe(after=two.cursor) as feed:
            ready, before = wait_ready(feed)
            assert [m.message for m in before] == [TextMessage("three"), TextMessage("four")]
            assert all(m.cursor > two.cursor for m in before)
            assert before[0].cursor < before[1].cursor
            assert not ready.events_lost
            assert ready.cursor >= before[1].cursor
            alice.send_peer_message("bob", "five")
            assert next_message(feed).message == TextMessage("five")


def test_a_repeated_client_message_id_delivers_once(server: Server) -> None:
    with Client(server.url, token("alice")) as alice, Client(server.url, token("bob")) as bob:
        alice.join_channel("room")
        bob.join_channel("room")
        with bob.subscribe() as feed:
            wait_ready(feed)
            first = alice.send_peer_message("bob", "once", client_message_id="python-once-1")
            again = alice.send_peer_message("bob", "once", client_message_id="python-once-1")
            assert again.message_id == first.message_id and again.delivery == first.delivery
            channel = alice.send_channel_message("room", "once", client_message_id="python-once-2")
            channel_again = alice.send_channel_message("room", "once", client_message_id="python-once-2")
            assert channel_again.message_id == channel.message_id
            # Without an ID each send is its own message (a generated ID each time).
            a = alice.send_peer_message("bob", "same text")
            b = alice.send_peer_message("bob", "same text")
            assert a.message_id != b.message_id
            got = [next_message(feed) for _ in range(4)]
            assert [m.message_id for m in got] == [
                first.message_id, channel.message_id, a.message_id, b.message_id
            ]
            try:
                extra = feed.next_event(timeout=0.5)
            except TimeoutError:
                extra = None
            assert not isinstance(extra, ReceivedMessage), f"delivered again: {extra}"


def test_a_reconnecting_feed_resumes_after_its_last_cursor(server: Server) -> None:
    # bob's feed waits 2 s before reconnecting, so that alice's message is sent while
    # bob is away: only a reconnection that asks for what came after its last cursor
    # gets it (and gets nothing it had already).
    slow = ClientOptions(backoff=2.0, max_backoff=2.0)
    with Client(server.url, token("alice")) as alice, Client(server.url, token("bob"), options=slow) as bob:
        alice.join_channel("team")
        bob.join_channel("team")
        with bob.subscribe() as feed:
            wait_ready(feed)
            alice.send_channel_message("team", "before the break")
            one = next_message(feed)
            server.restart()
            deadline = time.monotonic() + 10
            while not isinstance(feed.next_event(timeout=max(0.01, deadline - time.monotonic())), Disconnected):
                pass
            # Memberships do not outlive the server process: both join again.
            alice.join_channel("team")
            bob.join_channel("team")
            sent = alice.send_channel_message("team", "during the break")
            ready, replayed = wait_ready(feed, limit=20)
            assert ready.reconnected
            assert [m.message_id for m in replayed] == [sent.message_id]
            assert replayed[0].cursor > one.cursor
            try:
                extra = feed.next_event(timeout=0.5)
            except TimeoutError:
                extra = None
            assert not isinstance(extra, ReceivedMessage), f"delivered again: {extra}"
