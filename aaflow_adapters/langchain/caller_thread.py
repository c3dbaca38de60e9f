"""Calls that aaflow's threads hand to the caller's thread, run there while it waits for output.

Some record managers work only on the thread that made them: SQLAlchemy's sqlite `:memory:`
gives every thread its own empty database and, once more than five threads have used it, closes
an arbitrary thread's connection, the caller's included, which loses the caller's records. So sync
`index` makes every record-manager call on the caller's thread: the planner's read-ahead `exists`
is handed over here and answered while the caller waits for the next embedded batch (`aindex`
does the same through its event loop).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from aaflow_core.errors import AAFlowError

T = TypeVar("T")
_END = object()
_WAKE = None


class CallerGoneError(AAFlowError):
    """The caller's thread stopped serving calls (the run ended or failed) before this call ran."""


class CallerThread:
    """Owned by the thread that creates it: `iterate` yields an iterator's items and, while waiting
    for each, runs the calls other threads pass to `call`, in the order they arrive."""

    def __init__(self) -> None:
        self._inbox: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], Future[Any]] | None] = \
            queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._next = ThreadPoolExecutor(1, thread_name_prefix="aaflow-caller-next")

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """From another thread: `fn(*args)` run on the caller's thread; its result or its exception."""
        done: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise CallerGoneError(f"{getattr(fn, '__qualname__', fn)}: the caller's thread no longer serves calls")
            self._inbox.put((fn, args, done))
        return done.result()

    def iterate(self, items: Iterator[T]) -> Iterator[T]:
        """On the caller's thread: `items`, each taken by `next` on a helper thread only when asked for
        (so backpressure holds), with handed-over calls run here meanwhile."""
        while not self._closed:
            pending = self._next.submit(next, items, _END)
            pending.add_done_callback(lambda _: self._inbox.put(_WAKE))
            while not pending.done():
                self._serve(self._inbox.get())
            item = pending.result()
            if item is _END:
                return
            yield item

    def close(self) -> None:
        """Stop serving: calls waiting or arriving later raise `CallerGoneError`; a `next` in flight ends."""
        with self._lock:
            self._closed = True  # from here on nothing new enters the inbox
        while True:
            try:
                request = self._inbox.get_nowait()
            except queue.Empty:
                break
            if request is not None:
                request[2].set_exception(CallerGoneError("the caller's thread stopped before this call ran"))
        self._next.shutdown(wait=True)  # a `next` in flight ends: the calls it may wait on have failed

    def __enter__(self) -> CallerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _serve(request: tuple[Callable[..., Any], tuple[Any, ...], Future[Any]] | None) -> None:
        if request is None:
            return
        fn, args, done = request
        try:
            done.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - handed back to the thread that asked
            done.set_exception(exc)
