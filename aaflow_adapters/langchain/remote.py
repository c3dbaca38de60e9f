"""The remote path: model calls go through one event loop and aaflow's AsyncBatcher.

LangChain's `batch` runs a chat model on a thread pool (6 threads on 2 cores), one blocking
client call per thread. Here every call is an `ainvoke` (or one `abatch` for completion LLMs)
on a single long-lived event loop, with at most `in_flight` calls outstanding across the whole
chain: one global budget instead of one pool per step.
"""
from __future__ import annotations

import atexit
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aaflow_core.concurrency import AsyncBatcher, BatchPolicy, LoopThread, RetryPolicy

Thunk = Callable[[], Awaitable[Any]]

_LOOP: LoopThread | None = None
_LOOP_LOCK = threading.Lock()


def shared_loop() -> LoopThread:
    """One event loop per process: async HTTP clients (openai, httpx) bind their pools to a loop."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            _LOOP = LoopThread("aaflow-langchain-loop").__enter__()
            atexit.register(_LOOP.__exit__, None, None, None)
        return _LOOP


async def _call_one(thunks: list[Thunk]) -> list[Any]:
    """Run the call; a failure becomes that item's result, so one bad input never fails the batch."""
    out: list[Any] = []
    for thunk in thunks:
        try:
            out.append(await thunk())
        except Exception as exc:  # noqa: BLE001 - handed back per input, as return_exceptions does
            out.append(exc)
    return out


class RemoteGate:
    """A global in-flight budget for remote calls, shared by every remote step of one run.

    No retries here: LangChain clients retry themselves (`max_retries`), and retrying twice
    would change how many requests a server sees compared with stock LangChain.
    """

    def __init__(self, in_flight: int) -> None:
        self.loop = shared_loop()
        self.batcher: AsyncBatcher[Thunk, Any] = AsyncBatcher(
            _call_one, BatchPolicy(max_batch_size=1, max_in_flight=in_flight), RetryPolicy(attempts=1),
            describe=lambda thunk: getattr(thunk, "__qualname__", "remote call"),
        )

    def run(self, thunks: Sequence[Thunk]) -> list[Any]:
        """Run the calls concurrently (within the budget); results, or exceptions, in order."""
        if not thunks:
            return []
        return self.loop.run(self.batcher.map(list(thunks)))
