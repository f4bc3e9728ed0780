"""How a client reaches the server, shared by the synchronous and asyncio clients: the
server URL (or several replicas' addresses), the token sent with every call, channel
settings and the channel, retry pauses."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, Union
from urllib.parse import urlsplit

import grpc

from courier.errors import InvalidArgumentError, UnauthenticatedError

#: A token, or a function that returns the current one (read before every call, so a
#: refreshed token is used without reconnecting).
TokenSource = Union[str, Callable[[], str]]

#: Where the server is: an ``http://host:port`` (``https://`` for TLS) URL; several
#: replicas' addresses, as a list (``["127.0.0.1:50051", "127.0.0.1:50052"]``, items
#: with or without ``http://``) or comma-separated in one string; or a gRPC target
#: string (``ipv4:10.0.0.1:50051,10.0.0.2:50051``, ``dns:///courier.chat:50051``).
Servers = Union[str, Sequence[str]]

#: The gRPC target schemes taken as they are (plaintext).
_GRPC_SCHEMES = ("ipv4:", "ipv6:", "dns:", "unix:", "unix-abstract:")

#: Metadata of one call.
Metadata = tuple[tuple[str, str], ...]

#: gRPC channel arguments.
ChannelArgs = list[tuple[str, Union[int, str]]]

#: A channel, blocking (``grpc.Channel``) or asyncio (``grpc.aio.Channel``).
C = TypeVar("C")


@dataclass(frozen=True)
class ClientOptions:
    """How a client behaves; the defaults suit most applications."""

    #: The deadline of each unary call, in seconds.
    deadline: float = 10.0
    #: How many times a call that is safe to repeat is retried while the server is
    #: unavailable (and how many times a broken download resumes without progress).
    retries: int = 4
    #: The first pause before a retry, in seconds; it doubles each time.
    backoff: float = 0.1
    #: The longest pause between retries and between reconnections of a subscription.
    max_backoff: float = 5.0
    #: The most uploads and downloads this client runs at once (the server allows 9
    #: per user). One more is refused at once with TooManyTransfersError...
    max_transfers: int = 9
    #: ...unless this many may wait in a queue for a free slot (0: none, refuse).
    queued_transfers: int = 0
    #: The size of the data frames of an upload, in bytes.
    chunk_size: int = 256 * 1024
    #: PEM root certificates for ``https://`` servers; None uses the system's roots.
    root_certificates: bytes | None = None

    def __post_init__(self) -> None:
        if self.max_transfers < 1 or self.queued_transfers < 0:
            raise ValueError("max_transfers must be at least 1, queued_transfers at least 0")
        if not 1 <= self.chunk_size <= 3 * 1024 * 1024:
            raise ValueError("chunk_size must be between 1 byte and 3 MiB")


@dataclass(frozen=True)
class Target:
    """Where the server is."""

    #: ``host:port`` for gRPC.
    address: str
    #: True for TLS (an ``https://`` URL).
    secure: bool
    #: The servers as given, as one string: what a resumable upload's state file
    #: records as its server.
    label: str = field(default="", compare=False)
    #: The ``:authority`` of every call when the target names several servers (its
    #: own would hold commas, which servers refuse): the first address.
    authority: str | None = field(default=None, compare=False)
    #: True when calls are spread over every address of the target (several
    #: addresses, or a ``dns:`` target): ``round_robin`` rather than gRPC's default
    #: ``pick_first``, which for one server reconnects on demand after a restart
    #: instead of failing calls fast until its next attempt.
    balanced: bool = field(default=False, compare=False)


def parse_server_url(url: str) -> Target:
    """The target of ``http://host[:port]`` or ``https://host[:port]`` (TLS); the
    port defaults to 80 and 443."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgumentError(
            f"bad server URL {url!r}: expected http://host:port or https://host:port"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise InvalidArgumentError(f"bad server URL {url!r}: only a scheme, host and port")
    try:
        port = parts.port
    except ValueError as e:
        raise InvalidArgumentError(f"bad server URL {url!r}: {e}") from None
    secure = parts.scheme == "https"
    host = parts.hostname
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return Target(f"{host}:{port or (443 if secure else 80)}", secure)


def parse_servers(servers: Servers) -> Target:
    """The gRPC target of ``servers`` (see :data:`Servers`).

    Several addresses become one ``ipv4:`` (or ``ipv6:``) target, which the channel
    balances call by call (``round_robin``): they must be IP addresses, all of one
    family and one scheme. A DNS name is one address; with ``round_robin`` its calls
    spread over every address the name resolves to (a Kubernetes headless Service)
    when given as a gRPC ``dns:///name:port`` target."""
    if isinstance(servers, str):
        text = servers.strip()
        if text.startswith(_GRPC_SCHEMES):
            scheme, _, rest = text.partition(":")
            several = scheme in ("ipv4", "ipv6") and "," in rest
            authority = rest.split(",")[0] if several else None
            return Target(text, False, text, authority, several or scheme == "dns")
        items = [item.strip() for item in text.split(",")]
    else:
        items = [item.strip() for item in servers]
    if not items or not all(items):
        raise InvalidArgumentError(f"bad servers {servers!r}: expected one address or more")
    targets = [
        parse_server_url(item if "://" in item else f"http://{item}") for item in items
    ]
    label = ",".join(items)
    if len(targets) == 1:
        return Target(targets[0].address, targets[0].secure, label)
    if len({t.secure for t in targets}) > 1:
        raise InvalidArgumentError(f"bad servers {label!r}: mixes http:// and https://")
    families = set()
    for item, t in zip(items, targets):
        host = t.address.rsplit(":", 1)[0].strip("[]")
        try:
            families.add(ipaddress.ip_address(host).version)
        except ValueError:
            raise InvalidArgumentError(
                f"bad servers {label!r}: {item!r} is not an IP address (several addresses "
                "must be; a DNS name that resolves to every replica may be given alone)"
            ) from None
    if len(families) > 1:
        raise InvalidArgumentError(f"bad servers {label!r}: mixes IPv4 and IPv6 addresses")
    scheme = "ipv4" if families == {4} else "ipv6"
    address = f"{scheme}:" + ",".join(t.address for t in targets)
    return Target(address, targets[0].secure, label, targets[0].address, True)


def channel_options(options: ClientOptions, target: Target) -> ChannelArgs:
    """gRPC channel arguments: for a balanced target, spread calls over every
    address (``round_robin``: each call goes to the next ready server, so a retried
    call and a reconnecting subscription move off a server that died); reconnect
    quickly after a server restart, and accept data frames of up to 8 MiB."""
    backoff_ms = max(1, int(options.backoff * 1000))
    spread: ChannelArgs = []
    if target.balanced:
        spread.append(("grpc.lb_policy_name", "round_robin"))
    if target.authority:
        spread.append(("grpc.default_authority", target.authority))
    return spread + [
        ("grpc.initial_reconnect_backoff_ms", backoff_ms),
        ("grpc.min_reconnect_backoff_ms", backoff_ms),
        ("grpc.max_reconnect_backoff_ms", max(backoff_ms, int(options.max_backoff * 1000))),
        ("grpc.max_receive_message_length", 8 * 1024 * 1024),
        ("grpc.max_send_message_length", 8 * 1024 * 1024),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def open_channel(
    target: Target,
    options: ClientOptions,
    secure: Callable[[str, grpc.ChannelCredentials, ChannelArgs], C],
    insecure: Callable[[str, ChannelArgs], C],
) -> C:
    """The channel to ``target`` with :func:`channel_options`: made by ``secure``
    (with the system's roots, or ``options.root_certificates``) for TLS, by
    ``insecure`` otherwise; ``grpc.secure_channel`` and ``grpc.insecure_channel`` for
    the synchronous client, their ``grpc.aio`` namesakes for the asyncio one."""
    settings = channel_options(options, target)
    if target.secure:
        credentials = grpc.ssl_channel_credentials(options.root_certificates)
        return secure(target.address, credentials, settings)
    return insecure(target.address, settings)


class Auth:
    """The token sent as ``authorization: Bearer <token>`` with every call."""

    def __init__(self, token: TokenSource) -> None:
        self._lock = threading.Lock()
        self._token = token

    def set(self, token: TokenSource) -> None:
        """Uses ``token`` from the next call on (calls in flight keep theirs)."""
        with self._lock:
            self._token = token

    def metadata(self) -> Metadata:
        """The metadata of one call, with the current token."""
        with self._lock:
            source = self._token
        token = (source() if callable(source) else source).strip()
        if not token:
            raise UnauthenticatedError("no token: give one (courier-server token --user NAME)")
        if not token.isascii() or not token.isprintable() or " " in token:
            raise UnauthenticatedError("the token holds characters a header cannot carry")
        return (("authorization", f"Bearer {token}"),)


def backoff_delays(options: ClientOptions) -> Iterator[float]:
    """The pauses before each of ``options.retries`` retries: ``backoff``, doubling,
    at most ``max_backoff``."""
    pause = options.backoff
    for _ in range(options.retries):
        yield pause
        pause = min(pause * 2, options.max_backoff)


class Backoff:
    """Pauses between reconnections of a subscription: doubling from ``backoff`` to
    ``max_backoff``, back to the start once a connection works."""

    def __init__(self, options: ClientOptions) -> None:
        self._first = options.backoff
        self._max = options.max_backoff
        self._next = self._first

    def next(self) -> float:
        """The pause before the next attempt."""
        pause = self._next
        self._next = min(pause * 2, self._max)
        return pause

    def reset(self) -> None:
        """A connection worked: start again from the shortest pause."""
        self._next = self._first
