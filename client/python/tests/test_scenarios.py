"""The eight client scenarios of tests/scenarios.md, through the synchronous client,
against real courier-server processes; every "check" line is asserted."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

import courier
from courier import (
    Client,
    Delivery,
    Disconnected,
    FileMessage,
    ImageMessage,
    MediaKind,
    Progress,
    Ready,
    TextMessage,
)
from harness import MIB, Server, SlowFile, next_message, pattern, png, sha256, token, wait_ready, wait_until


def client(server: Server, user: str) -> Client:
    return Client(server.url, token(user))


def test_upload_with_progress(server: Server, tmp_path: Path) -> None:
    data = pattern(5 * MIB, 1)
    path = tmp_path / "report.bin"
    path.write_bytes(data)
    seen: list[Progress] = []
    with client(server, "alice") as alice:
        upload = alice.start_upload(path, progress=seen.append)
        # The call returns at once with a request ID, before the upload completes.
        assert upload.request_id > 0
        assert not upload.done()
        media = upload.result(timeout=60)
    assert all(a.done <= b.done for a, b in zip(seen, seen[1:])), seen
    assert seen and all(p.total == 5 * MIB for p in seen)
    assert seen[-1].done == seen[-1].total
    assert (media.size, media.file_name, media.kind) == (5 * MIB, "report.bin", MediaKind.FILE)
    assert media.sha256 == sha256(data)


def test_cancel_mid_upload(server: Server) -> None:
    source = SlowFile(chunk=256 * 1024, free=8)
    with client(server, "alice") as alice:
        upload = alice.start_upload(source, file_name="big.bin", size=20 * MIB)
        request_id = upload.request_id
        try:
            wait_until(lambda: upload.progress.done > MIB, "progress past 1 MiB")
            server.wait_in_flight(1)
            alice.cancel(request_id)
            with pytest.raises(courier.TransferCancelledError) as cancelled:
                upload.result(timeout=10)
            assert cancelled.value.code == grpc.StatusCode.CANCELLED
        finally:
            source.release(100)
        server.wait_in_flight(0)
        server.wait_stored([])
        with pytest.raises(courier.NoSuchTransferError):
            alice.cancel(request_id)
        assert not upload.cancel()
        media = alice.upload(pattern(1000, 2), file_name="next.bin")
        assert media.size == 1000


def test_download_to_file(server: Server, tmp_path: Path) -> None:
    folder = tmp_path / "downloads"
    folder.mkdir()
    with client(server, "alice") as alice:
        data = pattern(3 * MIB, 3)
        media = alice.upload(data, file_name="doc.bin")
        target = folder / "doc.bin"
        assert alice.download_to_file(media.media_id, target) == media
        assert target.read_bytes() == data
        assert sorted(p.name for p in folder.iterdir()) == ["doc.bin"], "no partial file remains"

        # Cancelled part-way: neither the file nor a partial file is left.
        big = pattern(30 * MIB, 4)
        big_media = alice.upload(big, file_name="big.bin")
        target = folder / "big.bin"
        partial = Client.partial_path(target, big_media.media_id)
        started, go = threading.Event(), threading.Event()

        def hold(p: Progress) -> None:
            if p.done > 0 and not started.is_set():
                started.set()
                go.wait(10)

        download = alice.start_download_to_file(big_media.media_id, target, progress=hold)
        assert started.wait(10), "the download moved no bytes"
        assert download.cancel()
        go.set()
        with pytest.raises(courier.TransferCancelledError):
            download.result(timeout=10)
        assert not target.exists()
        assert not partial.exists()

        # Interrupted earlier: the first MiB is in the partial file; only the rest is sent.
        partial.write_bytes(big[:MIB])
        server.wait_in_flight(0)  # the cancelled download's server side has stopped
        sent_before = server.metric("courier_download_bytes_total")
        alice.download_to_file(big_media.media_id, target)
        sent = server.metric("courier_download_bytes_total") - sent_before
        assert sent == 30 * MIB - MIB, "only the missing bytes were sent"
        assert target.read_bytes() == big
        assert not partial.exists()

        # A partial file with wrong bytes fails the check, is removed, and the next
        # download succeeds.
        target.unlink()
        partial.write_bytes(bytes(MIB))
        with pytest.raises(courier.IntegrityError) as corrupt:
            alice.download_to_file(big_media.media_id, target)
        assert corrupt.value.code == grpc.StatusCode.DATA_LOSS
        assert not partial.exists() and not target.exists()
        alice.download_to_file(big_media.media_id, target)
        assert target.read_bytes() == big


def test_download_to_memory(server: Server) -> None:
    data = pattern(200 * 1024, 5)
    seen: list[Progress] = []
    with client(server, "alice") as alice:
        media = alice.upload(data, file_name="notes.bin")
        got = alice.download_to_memory(media.media_id, progress=seen.append)
    assert got.data == data
    assert got.media == media
    assert seen[-1] == Progress(len(data), len(data))


def test_image_to_peer(server: Server) -> None:
    picture = png(40, 30)
    with client(server, "bob") as bob, client(server, "alice") as alice:
        with bob.subscribe() as feed:
            wait_ready(feed)
            media = alice.upload_image(picture, file_name="cat.png")
            assert (media.kind, media.width, media.height) == (MediaKind.IMAGE, 40, 30)
            from_record = media.image_message()
            from_id = alice.image_message_from_media_id(media.media_id)
            for message in (from_record, from_id):
                receipt = alice.send_peer_message("bob", message)
                assert receipt.delivery is Delivery.DELIVERED
                got = next_message(feed)
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
                assert bob.download_to_memory(image.media_id).data == picture


def test_file_to_channel(server: Server) -> None:
    with client(server, "alice") as alice, client(server, "bob") as bob:
        alice.join_channel("team")
        bob.join_channel("team")
        assert bob.channel_members("team") == ["alice", "bob"]
        with bob.subscribe() as bob_feed, alice.subscribe() as alice_feed:
            wait_ready(bob_feed)
            wait_ready(alice_feed)
            media = alice.upload_file(pattern(70_000, 6), file_name="plan.pdf")
            alice.send_channel_message("team", media.file_message())
            got = next_message(bob_feed)
            assert (got.sender, got.channel) == ("alice", "team")
            file = got.message
            assert isinstance(file, FileMessage), got
            assert (file.media_id, file.file_name, file.size) == (media.media_id, "plan.pdf", 70_000)
            # alice's own feed does not get her channel message: the next thing it
            # sees is a peer message sent after it.
            marker = bob.send_peer_message("alice", "marker")
            assert next_message(alice_feed).message_id == marker.message_id
        bob.leave_channel("team")
        assert alice.channel_members("team") == ["alice"]


def test_offline_cached_then_delivered(server: Server) -> None:
    with client(server, "alice") as alice:
        cached = alice.send_peer_message("bob", "while you were out", offline=True)
        assert cached.delivery is Delivery.CACHED
        with pytest.raises(courier.PeerUnreachableError) as lost:
            alice.send_peer_message("bob", "lost")
        assert lost.value.peer_id == "bob"
        with client(server, "bob") as bob, bob.subscribe() as feed:
            live, before = wait_ready(feed)
            assert live.offline_count == 1
            assert len(before) == 1
            got = before[0]
            assert got.offline
            assert (got.sender, got.message_id) == ("alice", cached.message_id)
            assert got.message == TextMessage("while you were out")
            assert alice.query_online_status(["bob", "carol"]) == {"bob": True, "carol": False}


def test_typed_errors(start_server: Callable[..., Server]) -> None:
    small = start_server("--max-upload-size", "1000", "--media-ttl", "1s")
    unknown = "0123456789abcdef0123456789abcdef"
    with client(small, "alice") as alice:
        with pytest.raises(courier.MediaTooLargeError) as too_large:
            alice.upload(pattern(1001, 7), file_name="big")
        assert too_large.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert too_large.value.reason == "MEDIA_TOO_LARGE"

        with pytest.raises(courier.NotFoundError):
            alice.get_media(unknown)
        with pytest.raises(courier.NotFoundError):
            alice.download_to_memory(unknown)
        with pytest.raises(courier.MediaUnavailableError) as unavailable:
            alice.send_peer_message("bob", ImageMessage(unknown), offline=True)
        assert unavailable.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert unavailable.value.reason == "MEDIA_UNAVAILABLE"
        with pytest.raises(courier.InvalidArgumentError):
            alice.start_download_to_memory("../etc/passwd")

        media = alice.upload(pattern(10, 8), file_name="short-lived")
        time.sleep(1.5)
        with pytest.raises(courier.NotFoundError):
            alice.get_media(media.media_id)

        alice.send_peer_message("bob", "x" * (32 * 1024), offline=True)
        with pytest.raises(courier.MessageTooLargeError) as message_too_large:
            alice.send_peer_message("bob", "x" * (32 * 1024 + 1), offline=True)
        assert message_too_large.value.reason == "MESSAGE_TOO_LARGE"

    # The client holds its transfers to 9 before the server has to. (A 1-hour rate
    # window: the 181st message below is refused however slowly this machine runs.)
    server = start_server("--rate-window", "1h")
    with client(server, "alice") as alice:
        sources = [SlowFile(chunk=10, free=0) for _ in range(9)]
        held = [alice.start_upload(s, file_name="slow", size=10) for s in sources]
        try:
            server.wait_in_flight(9)
            with pytest.raises(courier.TooManyTransfersError) as refused:
                alice.start_upload(pattern(10, 9), file_name="tenth")
            assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert refused.value.reason == "TOO_MANY_TRANSFERS"
            assert server.metric("courier_transfers_in_flight") == 9, "the 10th never left"
            for transfer in held:
                assert transfer.cancel()
            for transfer in held:
                with pytest.raises(courier.TransferCancelledError):
                    transfer.result(timeout=10)
        finally:
            for source in sources:
                source.release()
        # The client frees its slots at once; the server frees its own once it has
        # seen the cancellations, which under load can take a moment.
        server.wait_in_flight(0)
        assert alice.upload(pattern(10, 9), file_name="after").size == 10

        # The rate limit: 180 messages per window, the 181st is refused.
        refused_at = None
        for i in range(181):
            try:
                alice.send_peer_message("bob", "hi")
            except courier.PeerUnreachableError:
                continue
            except courier.RateLimitedError as e:
                assert e.reason == "RATE_LIMITED"
                refused_at = i
                break
        assert refused_at == 180

    with Client(server.url, "not-a-token") as forged:
        with pytest.raises(courier.UnauthenticatedError) as unauthenticated:
            forged.get_media(unknown)
        assert unauthenticated.value.code == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(courier.UnauthenticatedError):
            forged.join_channel("c")


def test_subscription_reconnects_after_a_server_restart(server: Server) -> None:
    with client(server, "bob") as bob, bob.subscribe() as feed:
        wait_ready(feed)
        server.restart()
        disconnected = False
        while True:
            event = feed.next_event(timeout=15)
            if isinstance(event, Disconnected):
                disconnected = True
            elif isinstance(event, Ready):
                assert event.reconnected
                break
            else:
                raise AssertionError(f"unexpected {event}")
        assert disconnected
        with client(server, "alice") as alice:
            sent = alice.send_peer_message("bob", "after the restart")
            assert next_message(feed).message_id == sent.message_id


def test_token_refresh_without_reconnecting(server: Server) -> None:
    tokens = iter([token("alice"), "expired-or-forged", token("alice")])
    current = [next(tokens)]
    with Client(server.url, lambda: current[0]) as alice:
        alice.join_channel("refresh")
        current[0] = next(tokens)
        with pytest.raises(courier.UnauthenticatedError):
            alice.join_channel("refresh")
        alice.set_token(token("alice"))
        assert alice.channel_members("refresh") == ["alice"]


def test_queued_transfers_wait_for_a_slot(server: Server) -> None:
    options = courier.ClientOptions(max_transfers=1, queued_transfers=1)
    with Client(server.url, token("alice"), options=options) as alice:
        source = SlowFile(chunk=10, free=0)
        first = alice.start_upload(source, file_name="first", size=10)
        second = alice.start_upload(pattern(10, 1), file_name="second")
        with pytest.raises(courier.TooManyTransfersError):
            alice.start_upload(pattern(10, 2), file_name="third")
        time.sleep(0.2)
        assert not second.done(), "the queued transfer waits for the slot"
        source.release()
        assert first.result(timeout=10).file_name == "first"
        assert second.result(timeout=10).file_name == "second"
        # A queued transfer can be cancelled before it starts.
        source = SlowFile(chunk=10, free=0)
        running = alice.start_upload(source, file_name="running", size=10)
        waiting = alice.start_upload(pattern(10, 3), file_name="waiting")
        alice.cancel(waiting.request_id)
        with pytest.raises(courier.TransferCancelledError):
            waiting.result(timeout=10)
        source.release()
        running.result(timeout=10)


def test_https_urls_speak_tls(server: Server) -> None:
    # The test server speaks plaintext only: a TLS client meets a failed handshake.
    tls_url = server.url.replace("http://", "https://")
    with Client(tls_url, token("alice"), options=courier.ClientOptions(retries=0)) as alice:
        with pytest.raises(courier.UnavailableError):
            alice.channel_members("x")


def test_an_unreachable_server_is_unavailable(server: Server) -> None:
    url = server.url
    server.stop()
    options = courier.ClientOptions(retries=2, backoff=0.05)
    with Client(url, token("alice"), options=options) as alice:
        with pytest.raises(courier.UnavailableError) as gone:
            alice.channel_members("x")
        assert gone.value.code == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(courier.UnavailableError):
            alice.upload(b"hello", file_name="hello.txt")


def test_a_failing_source_fails_the_upload_with_its_own_error(server: Server) -> None:
    from test_scenarios_async import Broken

    with client(server, "alice") as alice:
        with pytest.raises(courier.LocalFileError) as failed:
            alice.upload(Broken(), file_name="broken", size=10_000)
        assert isinstance(failed.value.__cause__, OSError)
        with pytest.raises(courier.InvalidArgumentError, match="ended after 1000 of 5000"):
            alice.upload(io.BytesIO(bytes(1000)), file_name="short", size=5000)
    server.wait_in_flight(0)
    server.wait_stored([])


def test_a_download_resumes_after_the_connection_breaks(server: Server, tmp_path: Path) -> None:
    data = pattern(30 * MIB, 11)  # more than gRPC buffers before the break
    target = tmp_path / "resumed.bin"
    started, go = threading.Event(), threading.Event()

    def hold(p: Progress) -> None:
        if p.done > 0 and not started.is_set():
            started.set()
            go.wait(20)

    options = courier.ClientOptions(retries=8, backoff=0.1)
    with Client(server.url, token("alice"), options=options) as alice:
        media = alice.upload(data, file_name="resumed.bin")
        download = alice.start_download_to_file(media.media_id, target, progress=hold)
        assert started.wait(10)
        server.restart()  # the connection breaks under the download
        go.set()
        assert download.result(timeout=30) == media
        # The new server process sent only what the first one had not.
        assert 0 < server.metric("courier_download_bytes_total") < len(data)
    assert target.read_bytes() == data
    assert not Client.partial_path(target, media.media_id).exists()


def test_dropping_a_subscription_closes_it(server: Server) -> None:
    with client(server, "bob") as bob, client(server, "alice") as alice:
        for event in bob.subscribe():
            assert isinstance(event, Ready)
            break
        wait_until(lambda: alice.query_online_status(["bob"]) == {"bob": False}, "bob offline")
        feed = bob.subscribe()
        wait_ready(feed)
        assert alice.query_online_status(["bob"]) == {"bob": True}
    # Closing the client closed its subscription too.
    with pytest.raises(StopIteration):
        while True:
            feed.next_event(timeout=5)
