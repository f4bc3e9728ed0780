"""Scenario 15 of tests/scenarios.md, three_replicas (issue 31): one client given the
addresses of three courier-server replicas on one NATS JetStream bus and one media
folder spreads its calls over them (round_robin), and its subscription and retried
calls move to another replica when one is killed. Skipped without a nats-server,
unless COURIER_TEST_REQUIRE_NATS=1 (the test command sets it)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from courier import AsyncClient, Client, Disconnected, Ready, ReceivedMessage, TextMessage
from harness import NatsServer, Server, nats_server_binary, pattern, token, wait_ready

REQUESTS = "courier_grpc_requests_total"


@pytest.fixture
def replicas() -> Iterator[list[Server]]:
    """Three servers with `--bus` on a fresh nats-server, sharing one media folder."""
    binary = nats_server_binary()
    if binary is None:
        message = "no nats-server: set COURIER_NATS_SERVER or put nats-server on the PATH"
        if os.environ.get("COURIER_TEST_REQUIRE_NATS") == "1":
            pytest.fail(message + " (COURIER_TEST_REQUIRE_NATS=1)")
        pytest.skip(message)
    nats = NatsServer(binary)
    media = Path(tempfile.mkdtemp(prefix="courier-py-shared-media-"))
    servers: list[Server] = []
    try:
        for _ in range(3):
            servers.append(Server("--bus", nats.url, "--storage", str(media)))
        yield servers
    finally:
        for server in servers:
            server.close()
        nats.close()
        shutil.rmtree(media, ignore_errors=True)


def addresses(servers: list[Server]) -> list[str]:
    return [server.addr for server in servers]


def spread(servers: list[Server], call: object) -> None:
    """Checks that 30 calls reach every server: each one's request count rose."""
    before = [server.metric_total(REQUESTS) for server in servers]
    for _ in range(30):
        assert callable(call)
        call()
    after = [server.metric_total(REQUESTS) for server in servers]
    assert all(a > b for a, b in zip(after, before)), f"requests before {before}, after {after}"
    assert sum(after) - sum(before) >= 30


def holder(servers: list[Server]) -> Server:
    """The one server holding a subscription."""
    held = [server for server in servers if server.metric_total("courier_subscribers") > 0]
    assert len(held) == 1, [server.metric_total("courier_subscribers") for server in servers]
    return held[0]


def test_three_replicas(replicas: list[Server]) -> None:
    with (
        Client(addresses(replicas), token("alice")) as alice,
        Client(",".join(addresses(replicas)), token("bob")) as bob,
    ):
        media = alice.upload(pattern(1000, 15), file_name="first.bin")
        alice.get_media(media.media_id)
        time.sleep(0.5)  # every replica's connection is up: round_robin uses them all
        spread(replicas, lambda: alice.get_media(media.media_id))

        with bob.subscribe() as feed:
            wait_ready(feed)
            texts = [f"message {n}" for n in range(10)]
            for text in texts[:5]:
                alice.send_peer_message("bob", text, offline=True)
            received: list[ReceivedMessage] = []
            while len(received) < 5:
                event = feed.next_event(timeout=10)
                if isinstance(event, ReceivedMessage):
                    received.append(event)

            victim = holder(replicas)
            victim.process.kill()  # kill -9
            victim.process.wait()
            for text in texts[5:]:
                alice.send_peer_message("bob", text, offline=True)  # retried on another
            told: list[object] = []
            deadline = time.monotonic() + 30
            # The replayed messages come before the new connection's Ready.
            while len(received) < 10 or not any(isinstance(e, Ready) for e in told):
                event = feed.next_event(timeout=max(0.01, deadline - time.monotonic()))
                if isinstance(event, ReceivedMessage):
                    received.append(event)
                elif isinstance(event, (Disconnected, Ready)):
                    told.append(event)
            assert any(isinstance(e, Disconnected) for e in told), told
            assert any(isinstance(e, Ready) and e.reconnected for e in told), told
            assert [m.message for m in received] == [TextMessage(t) for t in texts]
            cursors = [m.cursor for m in received]
            assert cursors == sorted(set(cursors)), cursors
            alive = [server for server in replicas if server is not victim]
            assert holder(alive) in alive

        # Uploads and downloads still work through the client after the kill.
        data = pattern(300 * 1024, 16)
        after = alice.upload(data, file_name="after.bin")
        assert bob.download_to_memory(after.media_id).data == data
        assert bob.download_to_memory(media.media_id).data == pattern(1000, 15)


@pytest.mark.asyncio
async def test_three_replicas_async(replicas: list[Server]) -> None:
    target = "ipv4:" + ",".join(addresses(replicas))
    async with AsyncClient(target, token("alice")) as alice:
        await alice.query_online_status(["bob"])
        await asyncio.sleep(0.5)
        before = [server.metric_total(REQUESTS) for server in replicas]
        for _ in range(30):
            await alice.query_online_status(["bob"])
        after = [server.metric_total(REQUESTS) for server in replicas]
        assert all(a > b for a, b in zip(after, before)), f"before {before}, after {after}"

        async with AsyncClient(addresses(replicas), token("bob")) as bob:
            feed = bob.subscribe()
            while not isinstance(await feed.next_event(timeout=10), Ready):
                pass
            await alice.send_peer_message("bob", "before", offline=True)
            first = await feed.next_event(timeout=10)
            assert isinstance(first, ReceivedMessage)

            victim = holder(replicas)
            victim.process.kill()
            victim.process.wait()
            # Every call still succeeds: those that meet the dead replica are retried.
            for n in range(5):
                await alice.send_peer_message("bob", f"after {n}", offline=True)
            got: list[ReceivedMessage] = []
            reconnected = False
            while len(got) < 5 or not reconnected:
                event = await feed.next_event(timeout=30)
                if isinstance(event, ReceivedMessage):
                    got.append(event)
                reconnected = reconnected or (isinstance(event, Ready) and event.reconnected)
            assert [m.message for m in got] == [TextMessage(f"after {n}") for n in range(5)]
            assert all(m.cursor > first.cursor for m in got)
            await feed.aclose()
            data = pattern(100 * 1024, 17)
            media = await alice.upload(data, file_name="after.bin")
            assert (await bob.download_to_memory(media.media_id)).data == data
