"""The header-only re-upload (mirrors client/rust/tests/reupload.rs): content this
user stored before completes without its bytes, with a new media ID; anyone else's
upload of it sends them. Checked with the server's `courier_upload_bytes_total`."""

from __future__ import annotations

import io
from pathlib import Path

import grpc
import pytest

from courier import AsyncClient, Client, Media, MediaKind, Progress, errors
from courier._transfers import TransferState
from courier._upload import Source, UploadPlan, reuse_refused
from harness import MIB, Server, pattern, sha256, token

RECEIVED = "courier_upload_bytes_total"


def test_a_repeated_upload_does_not_resend(server: Server, tmp_path: Path) -> None:
    data = pattern(4 * MIB, 8)
    path = tmp_path / "movie.bin"
    path.write_bytes(data)
    with Client(server.url, token("alice")) as alice, Client(server.url, token("bob")) as bob:
        before = server.metric(RECEIVED)
        first = alice.upload_file(path)
        assert server.metric(RECEIVED) - before == len(data), "the first upload sends"

        # Alice again, from the file and from memory: no byte is sent, a new media ID,
        # and the progress still reaches the total; the request ID works as ever.
        before = server.metric(RECEIVED)
        seen: list[Progress] = []
        transfer = alice.start_upload(path, progress=seen.append)
        assert transfer.request_id > 0
        again = transfer.result(timeout=60)
        from_memory = alice.upload_file(data, file_name="copy.bin")
        assert server.metric(RECEIVED) - before == 0, "a re-upload sends nothing"
        assert seen and seen[-1] == Progress(len(data), len(data))
        assert again.media_id != first.media_id
        assert from_memory.media_id not in (first.media_id, again.media_id)
        assert from_memory.file_name == "copy.bin"
        for media in (again, from_memory):
            assert media.sha256 == sha256(data)
            assert media.size == len(data)
        assert alice.download_to_memory(again.media_id).data == data

        # A file object can be read only once: it is always sent.
        before = server.metric(RECEIVED)
        streamed = alice.upload_file(io.BytesIO(data), file_name="stream.bin")
        assert server.metric(RECEIVED) - before == len(data), "a file object sends"
        assert streamed.sha256 == sha256(data)

        # Bob's upload of the same content sends every byte.
        before = server.metric(RECEIVED)
        bobs = bob.upload_file(path)
        assert server.metric(RECEIVED) - before == len(data), "another user sends"
        assert bobs.sha256 == sha256(data)


@pytest.mark.asyncio
async def test_a_repeated_upload_does_not_resend_async(server: Server, tmp_path: Path) -> None:
    data = pattern(4 * MIB, 9)
    path = tmp_path / "movie.bin"
    path.write_bytes(data)
    async with AsyncClient(server.url, token("alice")) as alice, AsyncClient(
        server.url, token("bob")
    ) as bob:
        before = server.metric(RECEIVED)
        first = await alice.upload_file(path)
        assert server.metric(RECEIVED) - before == len(data), "the first upload sends"

        before = server.metric(RECEIVED)
        seen: list[Progress] = []
        again = await alice.upload_file(path, progress=seen.append)
        from_memory = await alice.upload_file(data, file_name="copy.bin")
        assert server.metric(RECEIVED) - before == 0, "a re-upload sends nothing"
        assert seen and seen[-1] == Progress(len(data), len(data))
        assert again.media_id != first.media_id
        assert from_memory.file_name == "copy.bin"
        for media in (again, from_memory):
            assert media.sha256 == sha256(data)
            assert media.size == len(data)

        before = server.metric(RECEIVED)
        bobs = await bob.upload_file(path)
        assert server.metric(RECEIVED) - before == len(data), "another user sends"
        assert bobs.sha256 == sha256(data)


def test_what_is_hashed_and_offered(tmp_path: Path) -> None:
    data = pattern(3 * MIB + 5, 3)
    path = tmp_path / "a.bin"
    path.write_bytes(data)

    def plan(source: Source, size: int | None = None) -> UploadPlan:
        return UploadPlan(
            source,
            kind=MediaKind.FILE,
            file_name="a.bin",
            size=size,
            content_type="",
            chunk_size=MIB,
        )

    state: TransferState[Media] = TransferState(1, None)
    # A path (streamed, up to size=) and bytes are hashed; the header then carries it.
    assert plan(path).hash(state) == sha256(data)
    assert plan(path, size=MIB).hash(state) == sha256(data[:MIB])
    memory = plan(data)
    assert memory.hash(state) == sha256(data)
    assert memory.offer().header.sha256 == sha256(data)
    assert memory.offer().header.size == len(data)
    # A file object can be read only once: never hashed ahead, its header has no digest.
    once = plan(io.BytesIO(data))
    assert not once.reusable and once.hash(state) is None
    assert once.header().header.sha256 == b""
    # A cancelled transfer stops hashing.
    state.cancel()
    assert plan(path).hash(state) is None
    # Only a plain INVALID_ARGUMENT means "send the bytes".
    assert reuse_refused(errors.from_status(grpc.StatusCode.INVALID_ARGUMENT, "short", ()))
    assert not reuse_refused(errors.MediaTooLargeError("too large"))
    assert not reuse_refused(errors.from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", ()))
    assert not reuse_refused(errors.from_status(grpc.StatusCode.UNAUTHENTICATED, "no", ()))
