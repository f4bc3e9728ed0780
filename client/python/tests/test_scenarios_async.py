"""The scenarios of tests/scenarios.md through the asyncio client (AsyncClient): the
ones whose calls it runs its own way (uploads, downloads, the subscription), under
the same names."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

import courier
from courier import (
    AsyncClient,
    AsyncSubscription,
    Delivery,
    Disconnected,
    FileMessage,
    ImageMessage,
    MediaKind,
    Progress,
    Ready,
    ReceivedMessage,
    TextMessage,
)
from harness import MIB, Server, SlowFile, pattern, png, sha256, token


def client(server: Server, user: str) -> AsyncClient:
    return AsyncClient(server.url, token(user))


async def next_message(feed: AsyncSubscription, limit: float = 10.0) -> ReceivedMessage:
    """The next message on ``feed``, skipping ready and disconnected events."""
    deadline = time.monotonic() + limit
    while True:
        event = await feed.next_event(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(event, ReceivedMessage):
            return event


async def ready(feed: AsyncSubscription, limit: float = 10.0) -> tuple[Ready, list[ReceivedMessage]]:
    """Waits for the feed's Ready event; returns it and the messages before it."""
    deadline = time.monotonic() + limit
    before: list[ReceivedMessage] = []
    while True:
        event = await feed.next_event(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(event, Ready):
            return event, before
        if isinstance(event, ReceivedMessage):
            before.append(event)


async def wait_until(check: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_upload_with_progress(server: Server, tmp_path: Path) -> None:
    data = pattern(5 * MIB, 1)
    path = tmp_path / "report.bin"
    path.write_bytes(data)
    seen: list[Progress] = []
    async with client(server, "alice") as alice:
        upload = alice.start_upload(path, progress=seen.append)
        assert upload.request_id > 0
        assert not upload.done()
        media = await asyncio.wait_for(upload, 60)
    assert all(a.done <= b.done for a, b in zip(seen, seen[1:])), seen
    assert seen and all(p.total == 5 * MIB for p in seen)
    assert seen[-1].done == seen[-1].total
    assert (media.size, media.file_name, media.kind) == (5 * MIB, "report.bin", MediaKind.FILE)
    assert media.sha256 == sha256(data)


@pytest.mark.asyncio
async def test_cancel_mid_upload(server: Server) -> None:
    source = SlowFile(chunk=256 * 1024, free=8)
    async with client(server, "alice") as alice:
        upload = alice.start_upload(source, file_name="big.bin", size=20 * MIB)
        request_id = upload.request_id
        try:
            await wait_until(lambda: upload.progress.done > MIB, "progress past 1 MiB")
            await asyncio.to_thread(server.wait_in_flight, 1)
            alice.cancel(request_id)
            with pytest.raises(courier.TransferCancelledError):
                await asyncio.wait_for(upload, 10)
        finally:
            source.release(100)
        await asyncio.to_thread(server.wait_in_flight, 0)
        await asyncio.to_thread(server.wait_stored, [])
        with pytest.raises(courier.NoSuchTransferError):
            alice.cancel(request_id)
        media = await alice.upload(pattern(1000, 2), file_name="next.bin")
        assert media.size == 1000


@pytest.mark.asyncio
async def test_download_to_file(server: Server, tmp_path: Path) -> None:
    async with client(server, "alice") as alice:
        data = pattern(3 * MIB, 3)
        media = await alice.upload(data, file_name="doc.bin")
        target = tmp_path / "doc.bin"
        assert await alice.download_to_file(media.media_id, target) == media
        assert target.read_bytes() == data
        assert [p.name for p in tmp_path.iterdir()] == ["doc.bin"], "no partial file remains"

        big = pattern(30 * MIB, 4)
        big_media = await alice.upload(big, file_name="big.bin")
        target = tmp_path / "big.bin"
        partial = AsyncClient.partial_path(target, big_media.media_id)
        # Cancelled part-way (by cancelling the task that awaits it).
        started = asyncio.Event()
        download = alice.start_download_to_file(
            big_media.media_id, target, progress=lambda p: p.done > 0 and started.set()
        )
        waiter = asyncio.ensure_future(download)
        await asyncio.wait_for(started.wait(), 10)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        with pytest.raises(courier.TransferCancelledError):
            await asyncio.wait_for(download, 10)
        assert not target.exists() and not partial.exists()

        # Resumed from a partial file: only the rest is sent.
        partial.write_bytes(big[:MIB])
        await asyncio.to_thread(server.wait_in_flight, 0)
        sent_before = server.metric("courier_download_bytes_total")
        await alice.download_to_file(big_media.media_id, target)
        assert server.metric("courier_download_bytes_total") - sent_before == 30 * MIB - MIB
        assert target.read_bytes() == big
        assert not partial.exists()

        # A corrupt partial file fails the check and is removed.
        target.unlink()
        partial.write_bytes(bytes(MIB))
        with pytest.raises(courier.IntegrityError):
            await alice.download_to_file(big_media.media_id, target)
        assert not partial.exists() and not target.exists()
        await alice.download_to_file(big_media.media_id, target)
        assert target.read_bytes() == big


@pytest.mark.asyncio
async def test_download_to_memory(server: Server) -> None:
    data = pattern(200 * 1024, 5)
    seen: list[Progress] = []
    async with client(server, "alice") as alice:
        media = await alice.upload(data, file_name="notes.bin")
        got = await alice.download_to_memory(media.media_id, progress=seen.append)
    assert got.data == data
    assert got.media == media
    assert seen[-1] == Progress(len(data), len(data))


@pytest.mark.asyncio
async def test_image_to_peer(server: Server) -> None:
    picture = png(40, 30)
    async with client(server, "bob") as bob, client(server, "alice") as alice:
        async with bob.subscribe() as feed:
            await ready(feed)
            media = await alice.upload_image(picture, file_name="cat.png")
            from_record = media.image_message()
            from_id = await alice.image_message_from_media_id(media.media_id)
            for message in (from_record, from_id):
                receipt = await alice.send_peer_message("bob", message)
                assert receipt.delivery is Delivery.DELIVERED
                got = await next_message(feed)
                assert (got.sender, got.channel, got.offline) == ("alice", None, False)
                assert got.message_id == receipt.message_id
                image = got.message
                assert isinstance(image, ImageMessage), got
                assert image.media_id == media.media_id
                assert (image.file_name, image.size, image.width, image.height) == (
                    "cat.png",
                    media.size,
                    40,
                    30,
                )
                assert (await bob.download_to_memory(image.media_id)).data == picture


@pytest.mark.asyncio
async def test_file_to_channel(server: Server) -> None:
    async with client(server, "alice") as alice, client(server, "bob") as bob:
        await alice.join_channel("team")
        await bob.join_channel("team")
        assert await bob.channel_members("team") == ["alice", "bob"]
        async with bob.subscribe() as bob_feed, alice.subscribe() as alice_feed:
            await ready(bob_feed)
            await ready(alice_feed)
            media = await alice.upload_file(pattern(70_000, 6), file_name="plan.pdf")
            await alice.send_channel_message("team", media.file_message())
            got = await next_message(bob_feed)
            assert (got.sender, got.channel) == ("alice", "team")
            file = got.message
            assert isinstance(file, FileMessage), got
            assert (file.media_id, file.file_name, file.size) == (media.media_id, "plan.pdf", 70_000)
            marker = await bob.send_peer_message("alice", "marker")
            assert (await next_message(alice_feed)).message_id == marker.message_id
        await bob.leave_channel("team")
        assert await alice.channel_members("team") == ["alice"]


@pytest.mark.asyncio
async def test_offline_cached_then_delivered(server: Server) -> None:
    async with client(server, "alice") as alice:
        cached = await alice.send_peer_message("bob", "while you were out", offline=True)
        assert cached.delivery is Delivery.CACHED
        with pytest.raises(courier.PeerUnreachableError) as lost:
            await alice.send_peer_message("bob", "lost")
        assert lost.value.peer_id == "bob"
        async with client(server, "bob") as bob, bob.subscribe() as feed:
            live, before = await ready(feed)
            assert live.offline_count == 1
            assert len(before) == 1
            got = before[0]
            assert got.offline
            assert (got.sender, got.message_id) == ("alice", cached.message_id)
            assert got.message == TextMessage("while you were out")
            assert await alice.query_online_status(["bob", "carol"]) == {"bob": True, "carol": False}


@pytest.mark.asyncio
async def test_typed_errors(start_server: Callable[..., Server]) -> None:
    small = start_server("--max-upload-size", "1000")
    unknown = "0123456789abcdef0123456789abcdef"
    async with client(small, "alice") as alice:
        with pytest.raises(courier.MediaTooLargeError):
            await alice.upload(pattern(1001, 7), file_name="big")
        with pytest.raises(courier.NotFoundError):
            await alice.download_to_memory(unknown)
        with pytest.raises(courier.MediaUnavailableError):
            await alice.send_peer_message("bob", ImageMessage(unknown), offline=True)
        with pytest.raises(courier.MessageTooLargeError):
            await alice.send_peer_message("bob", "x" * (32 * 1024 + 1), offline=True)
        # A 10th concurrent transfer is refused in the client.
        sources = [SlowFile(chunk=10, free=0) for _ in range(9)]
        held = [alice.start_upload(s, file_name="slow", size=10) for s in sources]
        try:
            with pytest.raises(courier.TooManyTransfersError) as refused:
                alice.start_upload(pattern(10, 9), file_name="tenth")
            assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            for transfer in held:
                transfer.cancel()
            for transfer in held:
                with pytest.raises(courier.TransferCancelledError):
                    await asyncio.wait_for(transfer, 10)
        finally:
            for source in sources:
                source.release()
    async with AsyncClient(small.url, "not-a-token") as forged:
        with pytest.raises(courier.UnauthenticatedError):
            await forged.get_media(unknown)


@pytest.mark.asyncio
async def test_subscription_reconnects_after_a_server_restart(server: Server) -> None:
    async with client(server, "bob") as bob, bob.subscribe() as feed:
        await ready(feed)
        await asyncio.to_thread(server.restart)
        disconnected = False
        while True:
            event = await feed.next_event(timeout=15)
            if isinstance(event, Disconnected):
                disconnected = True
            elif isinstance(event, Ready):
                assert event.reconnected
                break
            else:
                raise AssertionError(f"unexpected {event}")
        assert disconnected
        async with client(server, "alice") as alice:
            sent = await alice.send_peer_message("bob", "after the restart")
            assert (await next_message(feed)).message_id == sent.message_id


class Broken:
    """A file object whose third read fails, as a disk or a pipe can."""

    def __init__(self) -> None:
        self.calls = 0

    def read(self, size: int) -> bytes:
        self.calls += 1
        if self.calls > 2:
            raise OSError(5, "Input/output error")
        return bytes(min(size, 1000))


@pytest.mark.asyncio
async def test_a_failing_source_fails_the_upload_with_its_own_error(server: Server) -> None:
    async with client(server, "alice") as alice:
        with pytest.raises(courier.LocalFileError) as failed:
            await alice.upload(Broken(), file_name="broken", size=10_000)
        assert isinstance(failed.value.__cause__, OSError)
        with pytest.raises(courier.InvalidArgumentError, match="ended after 1000 of 5000"):
            await alice.upload(io.BytesIO(bytes(1000)), file_name="short", size=5000)
    await asyncio.to_thread(server.wait_in_flight, 0)
    await asyncio.to_thread(server.wait_stored, [])
