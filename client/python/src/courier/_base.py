"""What the synchronous and asyncio clients hold alike: the options, where the
servers are, the token, the transfer table, and the calls that need no waiting
(``set_token``, ``cancel``, checking an upload's arguments). Each client adds its
channel and how it waits for calls (:mod:`courier.client`, :mod:`courier.aio`)."""

from __future__ import annotations

import os

from courier._connection import Auth, ClientOptions, Servers, TokenSource, parse_servers
from courier._download import partial_path
from courier._resumable import ResumablePlan
from courier._transfers import TransferTable
from courier._upload import Source, UploadPlan
from courier.errors import InvalidArgumentError
from courier.records import MediaKind

__all__ = ["ClientBase"]


class ClientBase:
    """The state and the waiting-free calls of :class:`courier.Client` and
    :class:`courier.aio.AsyncClient`."""

    def __init__(
        self, servers: Servers, token: TokenSource, options: ClientOptions | None
    ) -> None:
        self._options = options or ClientOptions()
        # Where the channel goes (one address, or several balanced round-robin).
        self._target = parse_servers(servers)
        # The servers as given: what a resumable upload's state file names.
        self._server_url = self._target.label
        self._auth = Auth(token)
        self._transfers = TransferTable(self._options.max_transfers, self._options.queued_transfers)

    def set_token(self, token: TokenSource) -> None:
        """Uses ``token`` (or the function returning it) from the next call on."""
        self._auth.set(token)

    @property
    def options(self) -> ClientOptions:
        """The options this client runs with."""
        return self._options

    def cancel(self, request_id: int) -> None:
        """Cancels a running (or queued) transfer by its request ID.

        Raises:
            NoSuchTransferError: no such transfer runs (it ended, or never was).
        """
        self._transfers.cancel(request_id)

    #: Where a download to ``path`` keeps its unfinished bytes.
    partial_path = staticmethod(partial_path)

    def _upload_plan(
        self,
        source: Source,
        kind: MediaKind,
        file_name: str | None,
        size: int | None,
        content_type: str,
    ) -> UploadPlan:
        """The checked plan of an upload (InvalidArgumentError before a slot is taken)."""
        return UploadPlan(
            source,
            kind=kind,
            file_name=file_name,
            size=size,
            content_type=content_type,
            chunk_size=self._options.chunk_size,
        )

    def _resumable_plan(
        self,
        path: str | os.PathLike[str],
        kind: MediaKind,
        file_name: str | None,
        content_type: str,
        max_parts: int | None,
    ) -> ResumablePlan:
        """The checked plan of a resumable upload to this client's servers."""
        if max_parts is not None and max_parts < 0:
            raise InvalidArgumentError(f"max_parts must be 0 or more, not {max_parts}")
        return ResumablePlan(
            path,
            server_url=self._server_url,
            kind=kind,
            file_name=file_name,
            content_type=content_type,
        )
