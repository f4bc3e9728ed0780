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
    """One subscription's state across its connections."""

    def __init__(self, options: ClientOptions) -> None:
        self._backoff = Backoff(options)
        self._reconnected = False
        #: The request of every connection.
        self.request = messaging_pb.SubscribeRequest()

    def on_frame(self, frame: messaging_pb.SubscribeResponse) -> Event | None:
        """The event of one frame (None for one this client does not know)."""
        event = _convert.event(frame, self._reconnected)
        if isinstance(event, Ready):
            self._backoff.reset()
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
