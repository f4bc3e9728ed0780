"""Fixtures: servers started per test (tests/scenarios.md, Harness)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from harness import Server


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    """Starts servers with the given flags; every one is killed when the test ends."""
    started: list[Server] = []

    def start(*flags: str) -> Server:
        server = Server(*flags)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    """A server on the default settings."""
    return start_server()
