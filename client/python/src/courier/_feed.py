"""The subscription's policy, shared by both clients: which frames become events, when
a broken feed reconnects and after how long. The clients only run the calls::

    while open:
        try: for frame in subscribe(): event = feed.on_frame(frame) ...
        except error: disconnected = feed.on_end(error)  # raises if it cannot reconnect
        sleep(disconnected.retry_in)
"""

from __future__ import annotations

from courier import _convert
from courier._connection import Backoff, ClientOptions
from courier.errors import (
    CourierError,
    InvalidArgumentError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from courier.records import Disconnected, Event, Ready
from courier.v1 import messaging_service_pb2 as messaging_pb

#: How many events may wait for the application before the feed stops reading (the
#: server then ends it as too slow, and it reconnects).
QUEUE_SIZE = 256


def reconnectable(error: CourierError) -> bool:
    """Whether a feed that ended with ``error`` should try again: not when the token
    or the request is refused, which trying again cannot cure."""
    return not isinstance(error, (UnauthenticatedError, PermissionDeniedError, InvalidArgumentError))


class Feed:
    """One subscription's state across its connections: each connection asks for
    the events after the last cursor handed on to the caller (or the ``Ready``
    event's cursor when none was), so that a reconnection misses and repeats
    nothing."""

    def __init__(self, options: ClientOptions, after: int = 0) -> None:
        self._backoff = Backoff(options)
        self._reconnected = False
        #: The cursor of the last event handed on (0: none, the server's live feed).
        self.cursor = after

    @property
    def request(self) -> messaging_pb.SubscribeRequest:
        """The request of the next connection: after the last cursor handed on."""
        return messaging_pb.SubscribeRequest(after=self.cursor)

    def on_frame(self, frame: messaging_pb.SubscribeResponse) -> Event | None:
        """The event of one frame (None for one this client does not know, or for a
        message at or before the cursor already handed on)."""
        event = _convert.event(frame, self._reconnected)
        if isinstance(event, Ready):
            self._backoff.reset()
            self.cursor = max(self.cursor, event.cursor)
        elif frame.cursor:
            if frame.cursor <= self.cursor:
                return None  # handed on before this connection
            self.cursor = frame.cursor
        return event

    def on_end(self, error: CourierError | None) -> Disconnected:
        """The connection ended (``error`` None: the server closed it cleanly, as at
        shutdown): the event that says so, with the pause before reconnecting.

        Raises:
            CourierError: ``error`` itself when reconnecting cannot cure it.
        """
        if error is not None and not reconnectable(error):
            raise error
        self._reconnected = True
        reason = str(error) if error is not None else "the server ended the feed"
        return Disconnected(reason=reason, retry_in=self._backoff.next(), error=error)


class End:
    """The last item of a subscription's queue: the error that ended it, if any."""

    def __init__(self, error: CourierError | None) -> None:
        self.error = error
