"""Transfers: every upload and download has a request ID, progress, a cancel handle and
a result, and takes one of the client's slots (9 by default) while it runs — the
model of Agora's SDK. Shared by the synchronous and asyncio clients; only how a
transfer's work runs (a thread, a task) differs."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from concurrent import futures
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from courier.errors import (
    NoSuchTransferError,
    TooManyTransfersError,
    TransferCancelledError,
)
from courier.records import Progress

T = TypeVar("T")

#: Called with every progress update of a transfer (in the thread or event loop that
#: runs it); it should return quickly.
ProgressCallback = Callable[[Progress], None]


class TransferState(Generic[T]):
    """What the caller's handle and the transfer's work share."""

    def __init__(self, request_id: int, on_progress: ProgressCallback | None) -> None:
        #: The client's ID of this transfer, valid while it runs.
        self.request_id = request_id
        #: The result, set once when the transfer ends; never cancelled through the
        #: future itself (cancel() is the way).
        self.future: Future[T] = Future()
        self.future.set_running_or_notify_cancel()
        self._on_progress = on_progress
        self._progress = Progress(0, 0)
        # Held only to read or change the fields below; never while calling out.
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._cancel_hooks: list[Callable[[], object]] = []

    @property
    def progress(self) -> Progress:
        """The latest progress."""
        return self._progress

    def report(self, done: int, total: int) -> None:
        """Records progress and tells the caller's callback."""
        self._progress = Progress(done, total)
        if self._on_progress is not None:
            self._on_progress(self._progress)

    @property
    def cancelled(self) -> bool:
        """True once the transfer was asked to stop."""
        return self._cancelled.is_set()

    def wait_cancelled(self, timeout: float) -> bool:
        """Sleeps up to ``timeout`` seconds, less when the transfer is cancelled
        meanwhile; returns whether it was."""
        return self._cancelled.wait(timeout)

    def on_cancel(self, hook: Callable[[], object]) -> None:
        """Runs ``hook`` when the transfer is cancelled (at once if it already was):
        it stops whatever the work is waiting on."""
        with self._lock:
            if not self._cancelled.is_set():
                self._cancel_hooks.append(hook)
                return
        hook()

    def cancel(self) -> None:
        """Asks the transfer to stop; its result becomes TransferCancelledError."""
        with self._lock:
            if self._cancelled.is_set():
                return
            self._cancelled.set()
            hooks, self._cancel_hooks = self._cancel_hooks, []
        for hook in hooks:
            hook()

    def failure(self, error: BaseException) -> BaseException:
        """What the transfer fails with after ``error``: TransferCancelledError
        when it was cancelled (the error is then only the cancel's echo)."""
        if self.cancelled and not isinstance(error, TransferCancelledError):
            return TransferCancelledError()
        return error

    def settle(self, value: T | None = None, error: BaseException | None = None) -> None:
        """Sets the result (or the error) once."""
        if self.future.done():
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(value)  # type: ignore[arg-type]


class TransferTable:
    """The client's transfers by request ID, and its limit on how many may run.

    Thread-safe: the synchronous client starts and ends transfers from many threads.
    """

    def __init__(self, max_active: int, max_queued: int) -> None:
        self._max_active = max_active
        self._max_queued = max_queued
        self._ids = itertools.count(1)
        # Held for one dictionary or queue operation, never while calling out.
        self._lock = threading.Lock()
        self._active: dict[int, TransferState[Any]] = {}
        self._queued: deque[tuple[TransferState[Any], Callable[[], None]]] = deque()

    def new_state(self, on_progress: ProgressCallback | None) -> TransferState[Any]:
        """A state with the next request ID, not yet started."""
        return TransferState(next(self._ids), on_progress)

    def start(self, state: TransferState[Any], launch: Callable[[], None]) -> None:
        """Runs ``launch`` (which starts the transfer's work) now if a slot is free,
        or later when one frees up if the queue has room; else raises
        TooManyTransfersError without starting anything."""
        with self._lock:
            if len(self._active) < self._max_active:
                self._active[state.request_id] = state
                queued = False
            elif len(self._queued) < self._max_queued:
                self._queued.append((state, launch))
                queued = True
            else:
                raise TooManyTransfersError(
                    f"too many transfers in flight: at most {self._max_active} uploads and "
                    "downloads per client at once"
                )
        if not queued:
            launch()

    def finish(self, state: TransferState[Any]) -> None:
        """Frees the slot of a transfer that ended (its request ID is unknown from
        now on) and starts the next queued one."""
        with self._lock:
            self._active.pop(state.request_id, None)
            launch = None
            if self._queued and len(self._active) < self._max_active:
                following, launch = self._queued.popleft()
                self._active[following.request_id] = following
        if launch is not None:
            launch()

    def cancel(self, request_id: int) -> None:
        """Cancels a running or queued transfer; NoSuchTransferError when no
        transfer with this ID is running or queued."""
        with self._lock:
            state = self._active.get(request_id)
            if state is None:
                for index, (waiting, _) in enumerate(self._queued):
                    if waiting.request_id == request_id:
                        del self._queued[index]
                        state = waiting
                        break
                else:
                    raise NoSuchTransferError(request_id)
                # It never started: it ends here.
                state.cancel()
                state.settle(error=TransferCancelledError())
                return
        state.cancel()

    def cancel_all(self) -> None:
        """Cancels every running and queued transfer (when the client closes)."""
        with self._lock:
            ids = [*self._active, *(s.request_id for s, _ in self._queued)]
        for request_id in ids:
            try:
                self.cancel(request_id)
            except NoSuchTransferError:
                pass


class _Handle(Generic[T]):
    """What both kinds of transfer handle offer."""

    def __init__(self, state: TransferState[T], table: TransferTable) -> None:
        self._state = state
        self._table = table

    @property
    def request_id(self) -> int:
        """The client's ID of this transfer; ``client.cancel(request_id)`` cancels it
        while it runs, and raises NoSuchTransferError once it has ended."""
        return self._state.request_id

    @property
    def progress(self) -> Progress:
        """The latest progress (``total`` is 0 until a download knows its size)."""
        return self._state.progress

    def cancel(self) -> bool:
        """Cancels the transfer: the call is dropped, the server removes any partial
        data, and the result becomes TransferCancelledError. Returns False when the
        transfer had already ended."""
        try:
            self._table.cancel(self._state.request_id)
        except NoSuchTransferError:
            return False
        return True

    def done(self) -> bool:
        """True once the transfer has ended, however it ended."""
        return self._state.future.done()

    def __repr__(self) -> str:
        status = "done" if self.done() else "running"
        p = self.progress
        return f"<{type(self).__name__} {self.request_id} {status} {p.done}/{p.total}>"


class Transfer(_Handle[T]):
    """A running upload or download of the synchronous client. ``result()`` waits for
    it; the transfer runs on whether or not anyone waits."""

    def result(self, timeout: float | None = None) -> T:
        """Waits for the transfer and returns its result (a Media record, or
        Downloaded bytes), or raises its CourierError.

        Raises:
            TimeoutError: when ``timeout`` seconds pass first (the transfer goes on).
        """
        try:
            return self._state.future.result(timeout)
        except futures.TimeoutError:  # not yet the builtin TimeoutError on Python 3.10
            raise TimeoutError(f"transfer {self.request_id} still runs after {timeout} s") from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Waits for the transfer and returns its error, or None if it succeeded."""
        return self._state.future.exception(timeout)


class AsyncTransfer(_Handle[T]):
    """A running upload or download of the asyncio client: await it for the result.
    Cancelling the task that awaits it cancels the transfer, as with any task."""

    def __await__(self) -> Generator[Any, None, T]:
        return self._wait().__await__()

    async def _wait(self) -> T:
        try:
            return await asyncio.wrap_future(self._state.future)
        except asyncio.CancelledError:
            self.cancel()
            raise


def run(table: TransferTable, state: TransferState[T], work: Callable[[], T]) -> None:
    """Runs a transfer's work to its end: frees its slot, then settles its result."""
    try:
        value = work()
    except BaseException as e:  # settled into the future, raised by result()
        table.finish(state)
        state.settle(error=state.failure(e))
        if not isinstance(e, Exception):
            raise
    else:
        table.finish(state)
        state.settle(value)


async def run_async(
    table: TransferTable, state: TransferState[T], work: Callable[[], Awaitable[T]]
) -> None:
    """:func:`run` for a coroutine function: the asyncio client's transfers."""
    try:
        value = await work()
    except asyncio.CancelledError:
        # Only cancel() cancels a transfer's task (through its hook).
        table.finish(state)
        state.settle(error=TransferCancelledError())
    except Exception as e:  # settled into the future, raised by await
        table.finish(state)
        state.settle(error=state.failure(e))
    else:
        table.finish(state)
        state.settle(value)
