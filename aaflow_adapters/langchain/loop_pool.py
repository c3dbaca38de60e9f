"""Under `abatch`: the sync work of a run's tasks gets a pool sized to the run's budget, on the caller's loop.

LangGraph runs a sync node (and LangChain a sync tool) under `ainvoke` through
`loop.run_in_executor(None, ...)`: the caller's default executor, `min(32, cpu + 4)` threads
(6 on 2 cores). A hand-built graph whose nodes call a model synchronously then has at most 6
model calls in flight under stock's `abatch`, whatever `max_concurrency` says. aaflow's `batch`
runs graphs on its own loop, whose default executor is sized to the budget; `abatch` must run
them on the caller's loop (its callbacks, contextvars and clients), so there, while a run is
active, `run_in_executor(None, ...)` calls made *from that run's tasks* go to the run's own pool.
Every other task on the loop keeps the loop's executor, and the functions run as before (LangChain
hands them over with their context copied); only how many may run at once changes.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from weakref import WeakKeyDictionary

from aaflow_adapters.langchain.remote import RemoteGate, active_gate


class _LoopRuns:
    """The runs active on one loop, each with its pool, and the loop's own `run_in_executor`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.pools: dict[RemoteGate, ThreadPoolExecutor] = {}
        self.stock: Callable[..., Any] = loop.run_in_executor

    def run_in_executor(self, executor: Executor | None, func: Callable[..., Any], *args: Any) -> Any:
        gate = active_gate()
        if executor is None and gate is not None:
            executor = self.pools.get(gate)
        return self.stock(executor, func, *args)


_RUNS: WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopRuns] = WeakKeyDictionary()
_LOCK = threading.Lock()


@contextmanager
def budget_pool(gate: RemoteGate) -> Iterator[None]:
    """While the block runs, sync calls the gate's tasks send to the default executor of `gate.loop`
    run on a pool of `gate.in_flight` threads. Loops that forbid new attributes (uvloop) are left as
    they are: their runs keep the loop's executor, as stock's do."""
    loop, pool = gate.loop, ThreadPoolExecutor(max_workers=gate.in_flight, thread_name_prefix="aaflow-abatch")
    with _LOCK:
        runs = _RUNS.get(loop)
        if runs is None:
            runs = _LoopRuns(loop)
            try:
                loop.run_in_executor = runs.run_in_executor  # type: ignore[method-assign]
            except AttributeError:
                runs = None
            else:
                _RUNS[loop] = runs
        if runs is not None:
            runs.pools[gate] = pool
    try:
        yield
    finally:
        with _LOCK:
            if runs is not None:
                del runs.pools[gate]
                if not runs.pools:
                    if vars(loop).get("run_in_executor") == runs.run_in_executor:
                        del loop.run_in_executor  # the loop's own method again
                    del _RUNS[loop]
        pool.shutdown(wait=False)
