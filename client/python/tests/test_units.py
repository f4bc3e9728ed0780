"""Unit tests of the pure logic shared by both clients: error mapping, URLs, tokens,
names, upload checks, the transfer table, the download and subscription policies."""

from __future__ import annotations

import io
import json
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

import courier
from courier import _feed, errors
from courier._connection import (
    Auth,
    ClientOptions,
    Target,
    channel_options,
    parse_server_url,
    parse_servers,
)
from courier._download import MemoryDownload, check_media_id, partial_path
from courier._transfers import TransferTable
from courier._upload import UploadPlan
from courier.records import Disconnected, MediaKind, Ready
from courier.v1 import error_reason_pb2
from courier.v1 import messaging_service_pb2 as messaging_pb


def trailer(
    reason: str, domain: str = "courier.v1", metadata: dict[str, str] | None = None
) -> tuple[tuple[str, bytes], ...]:
    """A grpc-status-details-bin trailer holding one ErrorInfo."""
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata))
    status = status_pb2.Status(code=3, message="x", details=[detail])
    return (("grpc-status-details-bin", status.SerializeToString()),)


def test_every_error_reason_has_its_class() -> None:
    # A reason added to the proto must be sorted into a class (errors._BY_REASON).
    for name, value in error_reason_pb2.ErrorReason.items():
        if value == error_reason_pb2.ERROR_REASON_UNSPECIFIED:
            continue
        error = errors.from_status(grpc.StatusCode.INVALID_ARGUMENT, "m", trailer(name))
        assert type(error).reason_value == value, name
        assert error.reason == name
        assert isinstance(error, courier.CourierError)


def test_reasons_and_codes_choose_the_class() -> None:
    too_large = errors.from_status(
        grpc.StatusCode.INVALID_ARGUMENT, "too big", trailer("MEDIA_TOO_LARGE")
    )
    assert isinstance(too_large, courier.MediaTooLargeError)
    assert isinstance(too_large, courier.InvalidArgumentError)
    assert (too_large.code, too_large.reason, str(too_large)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "MEDIA_TOO_LARGE",
        "too big",
    )
    limited = errors.from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "", trailer("RATE_LIMITED"))
    assert isinstance(limited, courier.RateLimitedError)
    assert isinstance(limited, courier.ResourceExhaustedError)
    # An unknown reason, or another domain's, falls back on the code.
    newer = errors.from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "m", trailer("SOMETHING_NEW"))
    assert type(newer) is courier.ResourceExhaustedError
    assert newer.reason == "SOMETHING_NEW"
    foreign = errors.from_status(
        grpc.StatusCode.INVALID_ARGUMENT, "m", trailer("MEDIA_TOO_LARGE", domain="other")
    )
    assert type(foreign) is courier.InvalidArgumentError
    assert foreign.reason == ""
    for code, cls in [
        (grpc.StatusCode.NOT_FOUND, courier.NotFoundError),
        (grpc.StatusCode.UNAUTHENTICATED, courier.UnauthenticatedError),
        (grpc.StatusCode.UNAVAILABLE, courier.UnavailableError),
        (grpc.StatusCode.OUT_OF_RANGE, courier.OutOfRangeError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, courier.DeadlineExceededError),
        (grpc.StatusCode.INTERNAL, courier.CourierError),
    ]:
        error = errors.from_status(code, "m", None)
        assert type(error) is cls and error.code == code
    # A malformed trailer is no reason.
    assert errors.error_info_reason((("grpc-status-details-bin", b"\xff\x00"),)) == ""


def test_resumable_upload_reasons() -> None:
    crc = errors.from_status(grpc.StatusCode.INVALID_ARGUMENT, "m", trailer("CHECKSUM_MISMATCH"))
    assert isinstance(crc, courier.ChecksumMismatchError)
    assert isinstance(crc, courier.InvalidArgumentError)
    offset = errors.from_status(
        grpc.StatusCode.FAILED_PRECONDITION,
        "m",
        trailer("UPLOAD_OFFSET_MISMATCH", metadata={"committed_size": "524288"}),
    )
    assert isinstance(offset, courier.UploadOffsetMismatchError)
    assert isinstance(offset, courier.FailedPreconditionError)
    assert offset.committed_size == 524288
    bare = errors.from_status(
        grpc.StatusCode.FAILED_PRECONDITION, "m", trailer("UPLOAD_OFFSET_MISMATCH")
    )
    assert isinstance(bare, courier.UploadOffsetMismatchError)
    assert bare.committed_size is None


def test_hook_and_deletion_reasons() -> None:
    # Issue 30: an upload hook's verdicts and deleted media, from the generated enum.
    for code, reason, cls, parent in [
        (grpc.StatusCode.FAILED_PRECONDITION, "MEDIA_REJECTED", courier.MediaRejectedError,
         courier.FailedPreconditionError),
        (grpc.StatusCode.FAILED_PRECONDITION, "MEDIA_QUARANTINED", courier.MediaQuarantinedError,
         courier.FailedPreconditionError),
        (grpc.StatusCode.NOT_FOUND, "MEDIA_DELETED", courier.MediaDeletedError,
         courier.NotFoundError),
    ]:
        error = errors.from_status(code, "refused by the hook", trailer(reason))
        assert type(error) is cls and isinstance(error, parent), reason
        assert (error.code, error.reason, error.message) == (code, reason, "refused by the hook")
        assert cls.reason_value == error_reason_pb2.ErrorReason.Value(reason)
        assert cls("m").code == code and cls("m").reason == reason


def test_media_url_requests() -> None:
    from datetime import timedelta

    from courier import _convert

    plain = _convert.media_url_request("m", 0, None)
    assert (plain.media_id, plain.max_edge, plain.HasField("lifetime")) == ("m", 0, False)
    assert not _convert.media_url_request("m", 0, 0).HasField("lifetime")
    timed = _convert.media_url_request("m", 90, timedelta(seconds=90, milliseconds=500))
    assert (timed.max_edge, timed.lifetime.seconds, timed.lifetime.nanos) == (90, 90, 500_000_000)
    assert _convert.media_url_request("m", 2**40, 1).max_edge == 2**31 - 1
    for max_edge, lifetime in ((-1, None), (0, -1.0), (0, timedelta(seconds=-1))):
        with pytest.raises(courier.InvalidArgumentError):
            _convert.media_url_request("m", max_edge, lifetime)


def test_client_side_errors_carry_the_nearest_code() -> None:
    assert courier.TooManyTransfersError("m").code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert courier.TooManyTransfersError("m").reason == "TOO_MANY_TRANSFERS"
    assert courier.IntegrityError("m").code == grpc.StatusCode.DATA_LOSS
    assert courier.IntegrityError("m").reason == ""
    assert courier.NoSuchTransferError(7).request_id == 7
    assert courier.TransferCancelledError().code == grpc.StatusCode.CANCELLED


def test_server_urls() -> None:
    assert parse_server_url("http://127.0.0.1:50051") == Target("127.0.0.1:50051", False)
    assert parse_server_url("https://chat.example.com") == Target("chat.example.com:443", True)
    assert parse_server_url("http://[::1]:9/") == Target("[::1]:9", False)
    for bad in ["127.0.0.1:50051", "ftp://x", "http://", "http://x:99999", "http://x/path"]:
        with pytest.raises(courier.InvalidArgumentError):
            parse_server_url(bad)


def test_several_servers_make_one_balanced_target() -> None:
    three = "ipv4:127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"
    for given in (
        ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"],
        ["http://127.0.0.1:1", "127.0.0.1:2", "http://127.0.0.1:3/"],
        "127.0.0.1:1, 127.0.0.1:2,127.0.0.1:3",
        three,
    ):
        target = parse_servers(given)
        assert target == Target(three, False), given
        assert target.authority == "127.0.0.1:1"  # never the commas of the target
    assert parse_servers(["[::1]:1", "http://[::2]:2"]) == Target("ipv6:[::1]:1,[::2]:2", False)
    assert parse_servers(["https://10.0.0.1:1", "https://10.0.0.2:2"]).secure
    # One address is what it was; a DNS name spreads over what it resolves to.
    one = parse_servers("http://courier.chat:50051")
    assert (one, one.authority, one.label) == (
        Target("courier.chat:50051", False), None, "http://courier.chat:50051"
    )
    assert parse_servers("dns:///courier:50051") == Target("dns:///courier:50051", False)
    for bad in (
        [],
        ["127.0.0.1:1", ""],
        ["127.0.0.1:1", "courier.chat:2"],
        ["127.0.0.1:1", "[::1]:2"],
        ["http://127.0.0.1:1", "https://127.0.0.1:2"],
        "127.0.0.1:1,ftp://127.0.0.1:2",
    ):
        with pytest.raises(courier.InvalidArgumentError):
            parse_servers(bad)
    settings = dict(channel_options(ClientOptions(), parse_servers(three)))
    assert settings["grpc.lb_policy_name"] == "round_robin"
    assert settings["grpc.default_authority"] == "127.0.0.1:1"
    assert dict(channel_options(ClientOptions(), parse_servers("dns:///courier:1")))[
        "grpc.lb_policy_name"
    ] == "round_robin"
    # One server keeps gRPC's pick_first: after a restart it reconnects on demand.
    single = dict(channel_options(ClientOptions(), parse_servers("http://127.0.0.1:1")))
    assert "grpc.lb_policy_name" not in single and "grpc.default_authority" not in single


def test_tokens_are_read_per_call() -> None:
    tokens = iter(["one", "two"])
    auth = Auth(lambda: next(tokens))
    assert auth.metadata() == (("authorization", "Bearer one"),)
    assert auth.metadata() == (("authorization", "Bearer two"),)
    auth.set(" three\n")
    assert auth.metadata() == (("authorization", "Bearer three"),)
    for bad in ["", "a b", "caf\u00e9", "a\x00b"]:
        auth.set(bad)
        with pytest.raises(courier.UnauthenticatedError):
            auth.metadata()


def test_names_lose_their_danger(tmp_path: Path) -> None:
    assert courier.safe_file_name("cat.png", "x") == "cat.png"
    assert courier.safe_file_name("../../etc/passwd", "x") == "_.._etc_passwd"
    assert courier.safe_file_name("a\\b\nc", "x") == "a_b_c"
    assert courier.safe_file_name("..", "id") == "id"
    assert courier.safe_file_name("", "id") == "id"
    assert courier.safe_file_name(".bashrc", "id") == "bashrc"
    assert courier.safe_file_name("/", "id") == "id"
    first = courier.unique_path(tmp_path, "cat.png", "x")
    assert first == tmp_path / "cat.png"
    first.write_bytes(b"1")
    assert courier.unique_path(tmp_path, "cat.png", "x") == tmp_path / "cat (1).png"
    (tmp_path / "cat (1).png").write_bytes(b"2")
    assert courier.unique_path(tmp_path, "cat.png", "x") == tmp_path / "cat (2).png"
    (tmp_path / "README").write_bytes(b"3")
    assert courier.unique_path(tmp_path, "README", "x") == tmp_path / "README (1)"


def plan(source: object, **kw: object) -> UploadPlan:
    args: dict[str, object] = dict(
        kind=MediaKind.FILE, file_name=None, size=None, content_type="", chunk_size=4
    )
    args.update(kw)
    return UploadPlan(source, **args)  # type: ignore[arg-type]


def test_uploads_are_checked_before_they_start(tmp_path: Path) -> None:
    with pytest.raises(courier.InvalidArgumentError, match="no such file"):
        plan(tmp_path / "missing.png")
    with pytest.raises(courier.InvalidArgumentError, match="not a regular file"):
        plan(tmp_path)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(courier.InvalidArgumentError, match="empty"):
        plan(empty)
    with pytest.raises(courier.InvalidArgumentError, match="file name"):
        plan(b"bytes without a name")
    with pytest.raises(courier.InvalidArgumentError, match="size="):
        plan(NoSize(), file_name="pipe")
    with pytest.raises(TypeError):
        plan(12345)
    # A file object's size and name come from the file itself.
    path = tmp_path / "ten.bin"
    path.write_bytes(bytes(range(10)))
    with open(path, "rb") as f:
        f.read(3)
        p = plan(f)
        assert (p.file_name, p.size) == ("ten.bin", 7)
        chunks = []
        while (chunk := p.read_chunk()) is not None:
            chunks.append(chunk)
        assert b"".join(chunks) == bytes(range(3, 10))
    p = plan(io.BytesIO(b"abcdef"), file_name="x.bin")
    assert p.size == 6
    assert plan(path).header().header.file_name == "ten.bin"


class NoSize:
    def read(self, size: int) -> bytes:
        return b""


def test_media_ids_and_partial_paths() -> None:
    check_media_id("0123456789abcdef0123456789abcdef")
    for bad in ["../etc/passwd", "0123456789ABCDEF0123456789ABCDEF", "abc", ""]:
        with pytest.raises(courier.InvalidArgumentError):
            check_media_id(bad)
    assert partial_path("/tmp/in/cat.png", "ab" * 16) == Path(f"/tmp/in/.cat.png.{'ab' * 16}.part")


def test_the_tenth_transfer_is_refused_or_queued() -> None:
    table = TransferTable(max_active=2, max_queued=1)
    launched: list[int] = []
    states = [table.new_state(None) for _ in range(4)]
    table.start(states[0], lambda: launched.append(0))
    table.start(states[1], lambda: launched.append(1))
    table.start(states[2], lambda: launched.append(2))  # queued
    with pytest.raises(courier.TooManyTransfersError):
        table.start(states[3], lambda: launched.append(3))
    assert launched == [0, 1]
    table.finish(states[0])
    assert launched == [0, 1, 2]
    with pytest.raises(courier.NoSuchTransferError):
        table.cancel(states[0].request_id)
    table.cancel(states[1].request_id)
    assert states[1].cancelled
    assert len({s.request_id for s in states}) == 4


def test_a_download_resumes_or_restarts() -> None:
    table = TransferTable(9, 0)
    job = MemoryDownload("ab" * 16, table.new_state(None), ClientOptions(retries=2, backoff=0.1))
    job.offset = 5
    # A partial longer than the object: start over, once.
    assert job.after_error(courier.OutOfRangeError("past the end")) == 0.0
    assert job.offset == 0
    with pytest.raises(courier.OutOfRangeError):
        job.after_error(courier.OutOfRangeError("again"))
    # A broken connection: retried with growing pauses, then given up.
    assert job.after_error(courier.UnavailableError("x")) == 0.1
    assert job.after_error(courier.UnavailableError("x")) == 0.2
    with pytest.raises(courier.UnavailableError):
        job.after_error(courier.UnavailableError("x"))
    with pytest.raises(courier.NotFoundError):
        job.after_error(courier.NotFoundError("gone"))
    job.state.cancel()
    with pytest.raises(courier.TransferCancelledError):
        job.after_error(courier.UnavailableError("x"))


def test_a_feed_reconnects_unless_the_token_is_refused() -> None:
    feed = _feed.Feed(ClientOptions(backoff=0.1, max_backoff=0.3))
    first = feed.on_end(courier.UnavailableError("down"))
    assert isinstance(first, Disconnected) and first.retry_in == 0.1
    assert feed.on_end(None).retry_in == 0.2
    assert feed.on_end(courier.TooSlowError("slow")).retry_in == 0.3
    assert feed.on_end(None).retry_in == 0.3
    ready = feed.on_frame(
        messaging_pb.SubscribeResponse(ready=messaging_pb.SubscribeReady(offline_message_count=2))
    )
    assert ready == Ready(2, reconnected=True)
    assert feed.on_end(None).retry_in == 0.1, "a working connection resets the backoff"
    with pytest.raises(courier.UnauthenticatedError):
        feed.on_end(courier.UnauthenticatedError("expired"))


def test_a_feed_resumes_after_the_last_cursor_handed_on() -> None:
    feed = _feed.Feed(ClientOptions(), after=5)
    assert feed.request.after == 5

    def peer(cursor: int, text: str) -> messaging_pb.SubscribeResponse:
        return messaging_pb.SubscribeResponse(
            cursor=cursor,
            peer_message=messaging_pb.PeerMessageReceived(
                sender_id="alice", message_id=f"m{cursor}", message=messaging_pb.Message(text=messaging_pb.TextMessage(text=text))
            ),
        )

    first = feed.on_frame(peer(6, "six"))
    assert isinstance(first, courier.ReceivedMessage) and first.cursor == 6
    assert feed.request.after == 6
    ready = feed.on_frame(
        messaging_pb.SubscribeResponse(
            ready=messaging_pb.SubscribeReady(cursor=6, events_lost=True)
        )
    )
    assert isinstance(ready, Ready) and ready.events_lost and ready.cursor == 6
    # A message at or before the cursor already handed on is not handed on again.
    assert feed.on_frame(peer(6, "six again")) is None
    assert feed.on_frame(peer(4, "old")) is None
    assert feed.request.after == 6
    # With no message yet, the ready event's cursor is where the next connection starts.
    fresh = _feed.Feed(ClientOptions())
    fresh.on_frame(messaging_pb.SubscribeResponse(ready=messaging_pb.SubscribeReady(cursor=41)))
    assert fresh.request.after == 41


def test_sends_carry_a_client_message_id() -> None:
    from courier import _convert

    generated = {_convert.peer_request("bob", "hi", False).client_message_id for _ in range(50)}
    assert len(generated) == 50
    assert all(len(i) == 32 and all(c in "0123456789abcdef" for c in i) for i in generated)
    assert _convert.channel_request("team", "hi", "mine").client_message_id == "mine"
    with pytest.raises(courier.InvalidArgumentError):
        _convert.peer_request("bob", "hi", False, "")


def test_a_resumable_upload_keeps_its_state_beside_the_file(tmp_path: Path) -> None:
    from courier import _resumable

    assert _resumable.crc32c(b"123456789") == 0xE3069283  # the RFC 3720 check value
    path = tmp_path / "report.bin"
    path.write_bytes(bytes(range(256)) * 40)
    plan = _resumable.ResumablePlan(
        path, server_url="http://s:1", kind=MediaKind.FILE, file_name=None, content_type=""
    )
    state = TransferTable(9, 0).new_state(None)
    assert plan.hash(state)
    assert plan.saved_upload() is None
    plan.save("u1", 4096)
    assert Path(_resumable.state_path(path)).is_file()
    assert plan.saved_upload() == "u1"
    part = plan.part(8192, 4096)
    assert (part.offset, len(part.data)) == (8192, 2048)  # the last part: the rest
    assert part.crc32c == _resumable.crc32c(path.read_bytes()[8192:])
    # Another server, or a changed file, does not resume the saved upload.
    other = _resumable.ResumablePlan(
        path, server_url="http://t:1", kind=MediaKind.FILE, file_name=None, content_type=""
    )
    assert other.hash(state) and other.saved_upload() is None
    path.write_bytes(b"x" * 10240)
    changed = _resumable.ResumablePlan(
        path, server_url="http://s:1", kind=MediaKind.FILE, file_name=None, content_type=""
    )
    assert changed.hash(state) and changed.saved_upload() is None
    plan.forget()
    assert not Path(_resumable.state_path(path)).exists()
    with pytest.raises(courier.InvalidArgumentError):
        _resumable.ResumablePlan(
            tmp_path / "missing", server_url="http://s:1", kind=MediaKind.FILE,
            file_name=None, content_type="",
        )


# An address where nothing listens: the clients connect lazily, so sends refused by
# the client itself never notice.
NOWHERE = "http://127.0.0.1:1"
EMPTY_MESSAGES: list[courier.Message | str] = [
    "",
    courier.TextMessage(""),
    courier.RawMessage(b"", "nothing inside"),
]


class Reached(Exception):
    """Raised by a client's stand-in for its RPCs: the send got as far as a call."""


def calls_of(
    client: courier.Client | courier.aio.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Replaces the client's unary RPCs with one that records the method and raises
    :class:`Reached`; returns the record."""
    made: list[str] = []

    def record(method: object, request: object, *, idempotent: bool) -> object:
        made.append(type(request).__name__)
        raise Reached()

    async def record_async(method: object, request: object, *, idempotent: bool) -> object:
        return record(method, request, idempotent=idempotent)

    is_async = isinstance(client, courier.aio.AsyncClient)
    monkeypatch.setattr(client, "_unary", record_async if is_async else record)
    return made


def assert_refused_locally(error: pytest.ExceptionInfo[courier.InvalidArgumentError]) -> None:
    assert type(error.value) is courier.InvalidArgumentError
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT and error.value.reason == ""
    assert "cannot be sent" in error.value.message


def test_empty_messages_are_refused_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    with courier.Client(NOWHERE, "t") as client:
        made = calls_of(client, monkeypatch)
        for message in EMPTY_MESSAGES:
            with pytest.raises(courier.InvalidArgumentError) as peer:
                client.send_peer_message("bob", message, offline=True)
            assert_refused_locally(peer)
            with pytest.raises(courier.InvalidArgumentError) as channel:
                client.send_channel_message("team", message)
            assert_refused_locally(channel)
        assert made == []
        # A message with something in it does get as far as the call.
        with pytest.raises(Reached):
            client.send_peer_message("bob", courier.RawMessage(b"\x00"))
        with pytest.raises(Reached):
            client.send_channel_message("team", " ")
        assert made == ["SendPeerMessageRequest", "SendChannelMessageRequest"]


@pytest.mark.asyncio
async def test_empty_messages_are_refused_before_any_call_async(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with courier.aio.AsyncClient(NOWHERE, "t") as client:
        made = calls_of(client, monkeypatch)
        for message in EMPTY_MESSAGES:
            with pytest.raises(courier.InvalidArgumentError) as peer:
                await client.send_peer_message("bob", message, offline=True)
            assert_refused_locally(peer)
            with pytest.raises(courier.InvalidArgumentError) as channel:
                await client.send_channel_message("team", message)
            assert_refused_locally(channel)
        assert made == []
        with pytest.raises(Reached):
            await client.send_peer_message("bob", courier.RawMessage(b"\x00"))
        with pytest.raises(Reached):
            await client.send_channel_message("team", " ")
        assert made == ["SendPeerMessageRequest", "SendChannelMessageRequest"]


def test_interop_refuses_an_empty_text_as_invalid_argument(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Not a usage error (2): the contract's error line and status 1, found by the
    # client (nothing listens at NOWHERE, which would be UNAVAILABLE).
    from courier import interop

    for where in (["--to", "bob"], ["--channel", "team"]):
        status = interop.main(["--server", NOWHERE, "--token", "t", "send", *where, "--text", ""])
        out = capsys.readouterr().out.splitlines()
        assert status == 1, where
        assert len(out) == 1
        error = json.loads(out[0])["error"]
        assert (error["code"], error["reason"]) == ("INVALID_ARGUMENT", ""), where
        assert "cannot be sent" in error["message"]
