"""The remote path: one in-flight budget for every slow call of a run, on one event loop.

LangChain's `batch` runs a chat model on a thread pool (6 threads on 2 cores), one blocking
client call per thread, and every graph invocation opens its own pool. Here every slow call
(a chat model's `ainvoke`, a graph's `ainvoke`, a wrapper's `ainvoke`, a sync-only step's
`invoke` on a thread) goes through one `RemoteGate`: at most `in_flight` outstanding across
the whole chain. `batch` runs the calls on aaflow's own loop thread; `abatch` on the caller's
loop, so async callback handlers and loop-bound resources work as in stock. While a gate is
open the garbage collector runs at a relaxed pace (`aaflow_core.remote.relaxed_gc`): with every
request in flight, default collection costs about as much CPU as everything else together.
"""
from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aaflow_core.remote import hold_relaxed_gc, release_relaxed_gc, shared_client

Thunk = Callable[[], Awaitable[Any]]

_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_THREADS = 0
_LOOP_LOCK = threading.Lock()


_ACTIVE: contextvars.ContextVar["RemoteGate | None"] = contextvars.ContextVar("aaflow_gate", default=None)


def active_gate() -> "RemoteGate | None":
    """The gate of the aaflow run this call is part of (None outside aaflow): model transports
    that know the remote layer route through it (see lean_openai.py)."""
    return _ACTIVE.get()


class Aborted(Exception):
    """A call not started because an earlier input failed (batch without `return_exceptions`)."""


def shared_loop(threads: int = 64) -> asyncio.AbstractEventLoop:
    """One event loop per process, on its own thread (async HTTP clients bind their pools to a loop),
    whose default executor has at least `threads` workers: sync graph nodes and tools run there."""
    global _LOOP, _LOOP_THREADS
    with _LOOP_LOCK:
        if _LOOP is None:
            _LOOP = _remote_owner_loop()
        if threads > _LOOP_THREADS:
            pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="aaflow-lc")
            _LOOP.call_soon_threadsafe(_LOOP.set_default_executor, pool)  # the old pool ends its work, dropped
            _LOOP_THREADS = threads
        return _LOOP


def _remote_owner_loop() -> asyncio.AbstractEventLoop:
    """The loop that owns aaflow_core.remote's sessions: calls made on it skip a hop between threads
    (two busy threads hand the GIL back and forth at every request and answer otherwise)."""
    return shared_client().loop()


class RemoteGate:
    """The run's in-flight budget; `loop` is where calls run (None: aaflow's shared loop thread).

    No retries here: LangChain clients retry themselves (`max_retries`), and retrying twice
    would change how many requests a server sees compared with stock LangChain.
    """

    def __init__(self, in_flight: int, loop: asyncio.AbstractEventLoop | None = None,
                 abort: threading.Event | None = None) -> None:
        self.in_flight = in_flight
        self.loop = loop or shared_loop(in_flight)
        self.abort = abort or threading.Event()
        self._slots: asyncio.Semaphore | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        hold_relaxed_gc()
        self._held = True

    def enter(self) -> None:
        """Mark the current context as part of this run (call inside a context copy)."""
        _ACTIVE.set(self)

    async def acall(self, thunk: Thunk) -> Any:
        """Run one call within the budget (on `self.loop`); an earlier failure may skip it."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.in_flight)
        _ACTIVE.set(self)  # this task's own context: what the call does inside belongs to the run
        async with self._slots:
            if self.abort.is_set():
                raise Aborted("not started: an earlier input failed")
            return await thunk()

    async def send_chat(self, endpoint: Any, body: dict[str, Any]) -> dict[str, Any]:
        """Where a routed chat request goes: straight to the endpoint (a Batch API run overrides this)."""
        return await shared_client().chat(endpoint, body)

    async def _gather(self, thunks: Sequence[Thunk]) -> list[Any]:
        return list(await asyncio.gather(*(self.acall(t) for t in thunks), return_exceptions=True))

    def run(self, thunks: Sequence[Thunk]) -> list[Any]:
        """From a worker thread: run the calls concurrently; results, or exceptions, in order."""
        if not thunks:
            return []
        return self.on_loop(self._gather(thunks))

    def on_loop(self, coro: Awaitable[Any]) -> Any:
        """From a worker thread: run a coroutine on the run's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()  # type: ignore[arg-type]

    async def in_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A blocking call on the run's own pool (sized to the budget), with this task's context."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.in_flight, thread_name_prefix="aaflow-sync")
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: ctx.run(fn, *args, **kwargs))

    def close(self) -> None:
        """End the run's pool and its hold on the collector's pace (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        with self._lock:
            held, self._held = self._held, False
        if held:
            release_relaxed_gc()
