"""Asynchronous micro-batching with bounded in-flight calls, retries, and ordered results.

Callers submit single items; the batcher groups them into calls of at most `max_batch_size`
items, keeps at most `max_in_flight` calls running, retries failed calls with exponential
backoff, and resolves each item's future with its own result. Results therefore come back in
input order no matter which call finishes first.

Determinism: with `max_wait_ms=None` a call is made only when `max_batch_size` items are
pending or on `flush()`, so call composition depends on the input alone. A deadline
(`max_wait_ms`) trades that for latency, which is what a server wants.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from aaflow_core.errors import ConfigError, RemoteCallError

T = TypeVar("T")
R = TypeVar("R")


def is_retryable(exc: BaseException) -> bool:
    """Default retry rule: transient failures (timeouts, connection errors, 429, 5xx)."""
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    if isinstance(status, int):
        return status == 429 or status >= 500
    return isinstance(exc, (TimeoutError, ConnectionError, asyncio.TimeoutError)) or getattr(exc, "retryable", False)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter; a `retry_after` attribute on the error is honoured."""

    attempts: int = 5
    initial_s: float = 0.05
    max_s: float = 8.0
    jitter_s: float = 0.05
    retry_on: Callable[[BaseException], bool] = is_retryable

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError("attempts", self.attempts, "must be >= 1")
        if self.initial_s < 0 or self.max_s < self.initial_s:
            raise ConfigError("initial_s/max_s", (self.initial_s, self.max_s), "need 0 <= initial_s <= max_s")

    def _wait(self) -> Callable[[Any], float]:
        expo = wait_exponential_jitter(initial=self.initial_s, max=self.max_s, jitter=self.jitter_s)

        def wait(state: Any) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hinted = getattr(exc, "retry_after", None)
            backoff = expo(state)
            return min(self.max_s, max(backoff, float(hinted))) if hinted else backoff

        return wait

    def retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=self._wait(),
            retry=retry_if_exception(self.retry_on),
            reraise=True,
        )


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int = 32
    max_wait_ms: float | None = None
    max_in_flight: int = 4

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ConfigError("max_batch_size", self.max_batch_size, "must be >= 1")
        if self.max_in_flight < 1:
            raise ConfigError("max_in_flight", self.max_in_flight, "must be >= 1")
        if self.max_wait_ms is not None and self.max_wait_ms < 0:
            raise ConfigError("max_wait_ms", self.max_wait_ms, "must be >= 0 or None")


@dataclass
class BatcherStats:
    """Counted, not timed: what tests assert concurrency and batching with."""

    calls: int = 0
    attempts: int = 0
    in_flight: int = 0
    max_in_flight_seen: int = 0
    batch_sizes: list[int] = field(default_factory=list)


class AsyncBatcher(Generic[T, R]):
    """Gathers items into calls of `fn(list[T]) -> Sequence[R]` (one result per item, in order)."""

    def __init__(
        self,
        fn: Callable[[list[T]], Awaitable[Sequence[R]]],
        policy: BatchPolicy = BatchPolicy(),
        retry: RetryPolicy = RetryPolicy(),
        *,
        describe: Callable[[T], str] = lambda item: repr(item)[:80],
    ) -> None:
        self._fn = fn
        self.policy = policy
        self.retry = retry
        self._describe = describe
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._slots: asyncio.Semaphore | None = None
        self.stats = BatcherStats()

    async def submit(self, item: T) -> R:
        """Queue one item and wait for its result."""
        return await self.enqueue(item)

    def enqueue(self, item: T) -> asyncio.Future[R]:
        """Queue one item and return its future at once (call from the event loop)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, fut))
        if len(self._pending) >= self.policy.max_batch_size:
            self._dispatch()
        elif self.policy.max_wait_ms is not None and self._timer is None:
            self._timer = loop.call_later(self.policy.max_wait_ms / 1000.0, self._dispatch)
        return fut

    def flush(self) -> None:
        """Send whatever is pending now, even a short batch."""
        while self._pending:
            self._dispatch()

    async def map(self, items: Iterable[T], *, return_exceptions: bool = False) -> list[R | BaseException]:
        """Submit all items, flush, and return their results in input order."""
        futures = [self.enqueue(item) for item in items]
        self.flush()
        return list(await asyncio.gather(*futures, return_exceptions=return_exceptions))

    async def aclose(self) -> None:
        """Flush and wait for every call in flight."""
        self.flush()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _dispatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        take = self._pending[: self.policy.max_batch_size]
        del self._pending[: self.policy.max_batch_size]
        if not take:
            return
        task = asyncio.get_running_loop().create_task(self._call(take))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, entries: list[tuple[T, asyncio.Future[R]]]) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.policy.max_in_flight)
        items = [item for item, _ in entries]
        attempts = 0
        async with self._slots:
            stats = self.stats
            stats.calls += 1
            stats.batch_sizes.append(len(items))
            stats.in_flight += 1
            stats.max_in_flight_seen = max(stats.max_in_flight_seen, stats.in_flight)
            try:
                async for attempt in self.retry.retrying():
                    with attempt:
                        attempts += 1
                        stats.attempts += 1
                        results = await self._fn(items)
                        if len(results) != len(items):
                            raise ValueError(f"call returned {len(results)} results for {len(items)} items")
            except Exception as exc:  # every item of the failed call gets an error naming it
                for item, fut in entries:
                    if not fut.done():
                        fut.set_exception(RemoteCallError(self._describe(item), attempts, exc))
                return
            finally:
                stats.in_flight -= 1
        for (_, fut), result in zip(entries, results):
            if not fut.done():
                fut.set_result(result)


class LoopThread:
    """An event loop on its own thread, so synchronous stages can drive async batchers."""

    def __init__(self, name: str = "aaflow-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop itself, for callers that hand it coroutines (`run_coroutine_threadsafe`)."""
        return self._loop

    def __enter__(self) -> "LoopThread":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run a coroutine on the loop and wait for its result from this (other) thread."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def submit(self, coro: Coroutine[Any, Any, R]) -> "concurrent.futures.Future[R]":
        """Start a coroutine on the loop; another event loop awaits it with `asyncio.wrap_future`."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)
