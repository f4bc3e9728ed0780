"""Thumbnails (mirrors client/rust/tests/thumbnail.rs): the server's thumbnail of an
image at the rounded-up size, and refusals as typed errors, on the sync and asyncio
clients."""

from __future__ import annotations

import struct
import zlib

import pytest

from courier import (
    AsyncClient,
    Client,
    ImageRefusedError,
    InvalidArgumentError,
    NotAnImageError,
    NotFoundError,
    Thumbnail,
)
from harness import Server, png, token


def jpeg_size(data: bytes) -> tuple[int, int]:
    """The width and height in a JPEG's first SOF segment."""
    assert data[:2] == b"\xff\xd8"
    pos = 2
    while pos + 4 <= len(data):
        marker, length = data[pos + 1], struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    raise AssertionError("no frame header")


def bomb() -> bytes:
    """A PNG declaring 100,000 x 100,000 pixels (header only)."""
    header = png(1, 1)
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", 100_000, 100_000, 8, 6, 0, 0, 0)
    chunk = struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
    return header[:8] + chunk + header[33:]


def test_thumbnail_sizes_and_refusals(server: Server) -> None:
    with Client(server.url, token("alice")) as alice:
        media = alice.upload_image(png(400, 200), file_name="wide.png")
        thumb = alice.thumbnail(media.media_id, 100)
        assert isinstance(thumb, Thumbnail)
        assert thumb.content_type == "image/jpeg"
        assert (thumb.width, thumb.height) == (320, 160), "100 rounds up to 320"
        assert jpeg_size(thumb.data) == (320, 160)
        assert alice.thumbnail(media.media_id, 96).width == 96

        text = alice.upload_file(b"no picture here", file_name="notes.txt")
        with pytest.raises(NotAnImageError) as refused:
            alice.thumbnail(text.media_id, 96)
        assert text.media_id in str(refused.value)
        large = alice.upload_image(bomb(), file_name="bomb.png")
        with pytest.raises(ImageRefusedError):
            alice.thumbnail(large.media_id, 96)
        with pytest.raises(InvalidArgumentError):
            alice.thumbnail(media.media_id, 0)
        with pytest.raises(NotFoundError):
            alice.thumbnail("00112233445566778899aabbccddeeff", 96)


@pytest.mark.asyncio
async def test_async_thumbnail(server: Server) -> None:
    async with AsyncClient(server.url, token("bob")) as bob:
        media = await bob.upload_image(png(50, 40), file_name="small.png")
        thumb = await bob.thumbnail(media.media_id, 640)
        assert (thumb.width, thumb.height) == (50, 40), "not enlarged"
        assert jpeg_size(thumb.data) == (50, 40)
