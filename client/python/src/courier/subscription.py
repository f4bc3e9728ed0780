"""The live feed: :meth:`Client.subscribe` gives a :class:`Subscription`, an
iterator; :meth:`AsyncClient.subscribe` an :class:`AsyncSubscription`, an async
iterator. Both read the feed in the background into a bounded queue and reconnect
by themselves, after the policy they share in ``_feed``."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterator

import grpc
import grpc.aio

from courier._connection import Auth, ClientOptions
from courier._feed import QUEUE_SIZE, End, Feed
from courier.errors import CourierError, from_rpc_error
from courier.records import Event
from courier.v1 import messaging_service_pb2_grpc as messaging_grpc

__all__ = ["AsyncSubscription", "Subscription"]


class _FeedReader:
    """Reads a feed into a bounded queue in a thread of its own, reconnecting as the
    shared :class:`Feed` policy says, until closed. Kept apart from
    :class:`Subscription` so that dropping the subscription closes the feed."""

    def __init__(
        self,
        messaging: messaging_grpc.MessagingServiceStub,
        auth: Auth,
        options: ClientOptions,
        after: int,
    ) -> None:
        self._messaging = messaging
        self._auth = auth
        self._feed = Feed(options, after)
        self.queue: queue.Queue[Event | End] = queue.Queue(QUEUE_SIZE)
        self._closed = threading.Event()
        # Held to swap the current call's cancel, never while calling out.
        self._lock = threading.Lock()
        self._cancel_call: Callable[[], object] | None = None

    @property
    def cursor(self) -> int:
        return self._feed.cursor

    def _put(self, item: Event | End) -> bool:
        """Queues ``item``, waiting while the queue is full; False once closed."""
        while not self._closed.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        end = End(None)
        try:
            while not self._closed.is_set():
                call = self._messaging.Subscribe(self._feed.request, metadata=self._auth.metadata())
                with self._lock:
                    self._cancel_call = call.cancel
                if self._closed.is_set():
                    call.cancel()
                error: CourierError | None = None
                try:
                    for frame in call:
                        event = self._feed.on_frame(frame)
                        if event is not None and not self._put(event):
                            return
                except grpc.RpcError as e:
                    error = from_rpc_error(e)
                finally:
                    call.cancel()
                if self._closed.is_set():
                    return
                disconnected = self._feed.on_end(error)
                if not self._put(disconnected) or self._closed.wait(disconnected.retry_in):
                    return
        except CourierError as e:
            end = End(e)
        except ValueError:  # the client's channel was closed under the feed
            pass
        finally:
            self._put(end)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            cancel = self._cancel_call
        if cancel is not None:
            cancel()
        try:  # wakes an iteration blocked on an empty queue
            self.queue.put_nowait(End(None))
        except queue.Full:
            pass


class Subscription:
    """A live feed of events: :class:`ReceivedMessage`, :class:`Ready` (once live,
    after the cached offline messages) and :class:`Disconnected` (the connection
    dropped; it reconnects by itself, and the next ``Ready`` has ``reconnected``
    set).

    Every message carries its ``cursor``; a reconnection resumes after the last
    one (or after the ``Ready`` event's cursor when none came), so that nothing is
    missed or repeated, and :attr:`cursor` is where a new subscription
    (``subscribe(after=...)``) would resume. A ``Ready`` with ``events_lost`` says
    the server no longer held every event after that cursor.

    Iterate over it; the iteration ends with an error that reconnecting cannot cure
    (such as an expired token) or after :meth:`close`. A thread reads the feed into
    a bounded queue (256 events) so that the connection is kept while the
    application works. The feed closes with :meth:`close`, at the end of a ``with``
    block, when the subscription is dropped, or when its client closes.
    """

    def __init__(
        self,
        messaging: messaging_grpc.MessagingServiceStub,
        auth: Auth,
        options: ClientOptions,
        after: int = 0,
    ) -> None:
        self._reader = _FeedReader(messaging, auth, options, after)
        self._ended = False
        threading.Thread(target=self._reader.run, name="courier-subscription", daemon=True).start()

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        return self._next(None)

    def next_event(self, timeout: float | None = None) -> Event:
        """The next event, waiting at most ``timeout`` seconds (None: forever).

        Raises:
            TimeoutError: no event came in time.
            StopIteration: the subscription has ended.
            CourierError: the error that ended it (once).
        """
        return self._next(timeout)

    def _next(self, timeout: float | None) -> Event:
        if self._ended:
            raise StopIteration
        try:
            item = self._reader.queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no event within {timeout} s") from None
        if isinstance(item, End):
            self._ended = True
            if item.error is not None:
                raise item.error
            raise StopIteration
        return item

    @property
    def cursor(self) -> int:
        """The cursor of the last event read from the server (messages are handed on
        in order, so it is the last message's once the queue is drained)."""
        return self._reader.cursor

    def close(self) -> None:
        """Closes the feed; the iteration ends."""
        self._reader.close()

    def __del__(self) -> None:
        self._reader.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _AsyncFeedReader:
    """Reads a feed into a bounded queue in a task, reconnecting as the shared
    :class:`Feed` policy says. Kept apart from :class:`AsyncSubscription` so that
    dropping the subscription closes the feed."""

    def __init__(
        self,
        messaging: messaging_grpc.MessagingServiceAsyncStub,
        auth: Auth,
        options: ClientOptions,
        after: int,
    ) -> None:
        self._messaging = messaging
        self._auth = auth
        self._feed = Feed(options, after)
        self.queue: asyncio.Queue[Event | End] = asyncio.Queue(QUEUE_SIZE)

    @property
    def cursor(self) -> int:
        return self._feed.cursor

    async def run(self) -> None:
        try:
            while True:
                call = self._messaging.Subscribe(self._feed.request, metadata=self._auth.metadata())
                error: CourierError | None = None
                try:
                    async for frame in call:
                        event = self._feed.on_frame(frame)
                        if event is not None:
                            await self.queue.put(event)
                except grpc.aio.AioRpcError as e:
                    error = from_rpc_error(e)
                finally:
                    call.cancel()
                disconnected = self._feed.on_end(error)
                await self.queue.put(disconnected)
                await asyncio.sleep(disconnected.retry_in)
        except CourierError as e:
            await self.queue.put(End(e))
        except grpc.aio.UsageError:  # the client's channel was closed under the feed
            await self.queue.put(End(None))


class AsyncSubscription:
    """A live feed of events, as an async iterator: the events of
    :class:`courier.Subscription` (``ReceivedMessage``, ``Ready``,
    ``Disconnected``); it reconnects by itself. A task reads the feed into a
    bounded queue. The feed closes with :meth:`aclose`, at the end of an ``async
    with`` block, when the subscription is dropped, or when its client closes.
    """

    def __init__(
        self,
        messaging: messaging_grpc.MessagingServiceAsyncStub,
        auth: Auth,
        options: ClientOptions,
        after: int = 0,
    ) -> None:
        self._reader = _AsyncFeedReader(messaging, auth, options, after)
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._reader.run())
        self._ended = False

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> Event:
        if self._ended:
            raise StopAsyncIteration
        item = await self._reader.queue.get()
        if isinstance(item, End):
            self._ended = True
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item

    async def next_event(self, timeout: float | None = None) -> Event:
        """The next event, waiting at most ``timeout`` seconds (None: forever).

        Raises:
            TimeoutError: no event came in time.
            StopAsyncIteration: the subscription has ended.
            CourierError: the error that ended it (once).
        """
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no event within {timeout} s") from None

    @property
    def cursor(self) -> int:
        """The cursor of the last event read from the server; see
        :attr:`Subscription.cursor`."""
        return self._reader.cursor

    async def aclose(self) -> None:
        """Closes the feed; the iteration ends."""
        self._ended = True
        if self._task.done():
            return
        self._task.cancel()
        await asyncio.wait([self._task])

    def __del__(self) -> None:
        if not self._task.done() and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
