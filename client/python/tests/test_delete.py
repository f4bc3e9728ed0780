"""Scenario 13 of tests/scenarios.md, delete_media (issue 30), on the sync and asyncio
clients, and the interop client's `delete` line, against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from courier import (
    AsyncClient,
    Client,
    ImageMessage,
    MediaDeletedError,
    MediaUnavailableError,
    NotFoundError,
)
from harness import Server, next_message, png, token, wait_ready


def test_delete_media(server: Server) -> None:
    picture = png(40, 30)
    with (
        Client(server.url, token("alice")) as alice,
        Client(server.url, token("bob")) as bob,
        Client(server.url, token("carol")) as carol,
    ):
        with bob.subscribe() as bob_feed:
            wait_ready(bob_feed)
            media = alice.upload_image(picture, file_name="cat.png")
            alice.send_peer_message("bob", media.image_message())
            alice.send_peer_message("carol", media.image_message(), offline=True)
            # bob received the image message before the deletion.
            got = next_message(bob_feed)
            assert isinstance(got.message, ImageMessage)
            assert got.message.media_id == media.media_id
        alice.delete_media(media.media_id)

        for refused in (
            lambda: bob.download_to_memory(media.media_id),
            lambda: bob.get_media(media.media_id),
            lambda: bob.thumbnail(media.media_id, 96),
        ):
            with pytest.raises(MediaDeletedError) as deleted:
                refused()
            assert (deleted.value.code.name, deleted.value.reason) == ("NOT_FOUND", "MEDIA_DELETED")
        # A new send of it is refused; alice builds the message from what she knows.
        with pytest.raises(MediaUnavailableError):
            alice.send_peer_message("bob", media.image_message(), offline=True)

        # carol gets the message cached before the deletion.
        with carol.subscribe() as carol_feed:
            ready, cached = wait_ready(carol_feed)
            assert ready.offline_count == 1
            assert [m.message for m in cached] == [got.message]
            assert cached[0].offline

        # Deleting again succeeds; bob cannot delete alice's media.
        alice.delete_media(media.media_id)
        other = alice.upload_image(png(20, 10), file_name="dog.png")
        with pytest.raises(NotFoundError) as not_found:
            bob.delete_media(other.media_id)
        assert not_found.value.code.name == "NOT_FOUND"
        assert not isinstance(not_found.value, MediaDeletedError)
        assert bob.download_to_memory(other.media_id).data == png(20, 10)


@pytest.mark.asyncio
async def test_delete_media_async(server: Server) -> None:
    async with AsyncClient(server.url, token("alice")) as alice:
        media = await alice.upload_image(png(40, 30), file_name="cat.png")
        await alice.delete_media(media.media_id)
        await alice.delete_media(media.media_id)
        with pytest.raises(MediaDeletedError):
            await alice.download_to_memory(media.media_id)
        with pytest.raises(MediaUnavailableError):
            await alice.send_peer_message("bob", media.image_message(), offline=True)


def interop(server: Server, user: str, *args: str) -> tuple[int, list[dict[str, object]]]:
    """Runs the interop client (`python -m courier.interop`) with the installed library."""
    env = dict(os.environ, COURIER_SERVER=server.url, COURIER_TOKEN=token(user))
    done = subprocess.run(
        [sys.executable, "-m", "courier.interop", *args],
        env=env, capture_output=True, text=True, timeout=60,
    )
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def test_interop_delete(server: Server, tmp_path: Path) -> None:
    with Client(server.url, token("alice")) as alice:
        media = alice.upload_file(b"some bytes", file_name="notes.txt")
    for _ in range(2):  # deleting again prints the same
        status, lines = interop(server, "alice", "delete", media.media_id)
        assert (status, lines) == (0, [{"media_id": media.media_id, "deleted": True}])
    status, lines = interop(server, "bob", "download", media.media_id, "-o", str(tmp_path / "notes.txt"))
    assert status == 1
    assert lines[0]["error"]["code"] == "NOT_FOUND"  # type: ignore[index]
    assert lines[0]["error"]["reason"] == "MEDIA_DELETED"  # type: ignore[index]
    assert not (tmp_path / "notes.txt").exists()
    status, lines = interop(server, "bob", "delete", media.media_id)
    assert status == 1 and lines[0]["error"]["code"] == "NOT_FOUND"  # type: ignore[index]
