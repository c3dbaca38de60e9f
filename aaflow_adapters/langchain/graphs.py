"""Graphs, agents, wrappers and other per-input steps: each input's own call, all within one budget.

A LangGraph graph (what `create_agent` returns), a chat model, a model under `with_retry` /
`with_fallbacks` / `configurable_fields`, a `RunnableBranch` or any Runnable without a batch of
its own is run once per input through its own `ainvoke` (or, for sync-only steps, its `invoke`
on the run's thread pool), so checkpointers, `thread_id`, `recursion_limit`, interrupts, retries
and fallbacks stay the framework's. What aaflow adds is the scheduling: every input's call is in
flight at once, up to the run's budget, with no barrier between inputs.
"""
from __future__ import annotations

import asyncio
import functools
import queue
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableBranch, RunnableConfig
from langchain_core.runnables.configurable import DynamicRunnable
from langchain_core.runnables.fallbacks import RunnableWithFallbacks
from langchain_core.runnables.retry import RunnableRetry

from aaflow_adapters.langchain.hooks import install_hooks
from aaflow_adapters.langchain.loop_pool import budget_pool
from aaflow_adapters.langchain.remote import Aborted, RemoteGate
from aaflow_adapters.langchain.stages import RunContext, Stage

Mode = Literal["ainvoke", "invoke"]
START_WAVE = 8  # inputs started per loop turn (see run_each)
_NO_AFUNC = object()
Emit = Callable[[int, Any], None]
# `RunnableWithFallbacks` is not here: its invoke/ainvoke parent the inner runs to the caller's run
# where its batch parents them to its own, so it keeps its batch (GenericStage)
_WRAPPERS = (RunnableRetry, RunnableBranch, DynamicRunnable)


def is_graph(runnable: object) -> bool:
    """A LangGraph `Pregel` (a compiled `StateGraph`, `create_agent`'s agent); False without langgraph."""
    try:
        from langgraph.pregel import Pregel
    except ImportError:
        return False
    return isinstance(runnable, Pregel)


def sync_nodes_only(graph: Any) -> bool:
    """Whether every node of the graph is a plain sync function. Under `ainvoke` LangGraph sends each
    such node to the loop's executor and back (two thread hops per node, each waiting on the busy
    loop thread), so the graph's own `invoke` on the run's pool is cheaper, and is what stock's
    `batch` runs. Graphs with async nodes (`create_agent`'s model node), sub-graphs or other
    Runnables as nodes, and async-only checkpointers keep `ainvoke`."""
    from langchain_core.runnables.config import run_in_executor
    from langgraph.checkpoint.base import BaseCheckpointSaver

    saver = getattr(graph, "checkpointer", None)
    if isinstance(saver, BaseCheckpointSaver) and type(saver).get_tuple is BaseCheckpointSaver.get_tuple:
        return False
    for node in graph.nodes.values():
        afunc = getattr(node.bound, "afunc", _NO_AFUNC)  # LangGraph's RunnableCallable: func + afunc
        if not (afunc is None or (isinstance(afunc, functools.partial) and afunc.func is run_in_executor)):
            return False
    return True


def native_async(model: BaseChatModel) -> bool:
    """Whether the chat model has its own `_agenerate` (else its `ainvoke` runs `_generate` on the loop's
    executor: under `batch` aaflow calls its `invoke` on the run's pool instead; see loop_pool for `abatch`)."""
    return type(model)._agenerate is not BaseChatModel._agenerate


def per_input_mode(runnable: Runnable[Any, Any]) -> Mode | None:
    """How a step runs per input, or None when it has a batch of its own worth keeping."""
    if isinstance(runnable, BaseChatModel):
        return "ainvoke" if native_async(runnable) else "invoke"
    if is_graph(runnable):
        return "invoke" if sync_nodes_only(runnable) else "ainvoke"
    if isinstance(runnable, _WRAPPERS):
        return "ainvoke"
    if isinstance(runnable, RunnableWithFallbacks):
        return None
    if type(runnable).batch is Runnable.batch:  # stock's batch is a thread pool over invoke
        return "ainvoke" if type(runnable).ainvoke is not Runnable.ainvoke else "invoke"
    return None


@dataclass
class PerInputStage(Stage):
    """One call per input (`ainvoke` on the run's loop, or `invoke` on its pool), within the budget."""

    runnable: Runnable[Any, Any]
    mode: Mode
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.label = type(self.runnable).__name__
        self.remote = True

    async def acall(self, value: Any, config: RunnableConfig, gate: RemoteGate, native: bool = False) -> Any:
        """`native` (under `abatch`): `ainvoke` even for a sync-only step, as stock's `abatch` calls it;
        its sync work then runs on the run's pool through `loop_pool`, its callbacks on the caller's loop."""
        if self.mode == "ainvoke" or native:
            return await self.runnable.ainvoke(value, config, **self.kwargs)
        return await gate.in_thread(self.runnable.invoke, value, config, **self.kwargs)

    def run(self, values: list[Any], configs: list[RunnableConfig], rt: RunContext) -> list[Any]:
        gate, native = rt.gate, rt.asynchronous
        return gate.run([(lambda v=v, c=c: self.acall(v, c, gate, native))
                         for v, c in zip(values, configs, strict=True)])


async def run_each(stage: PerInputStage, values: Sequence[Any], configs: Sequence[RunnableConfig],
                   gate: RemoteGate, emit: Emit, *, fail_fast: bool, native: bool = False) -> None:
    """Every input's call at once (the gate caps how many run), `emit(i, output or exception)` as each
    ends. With `fail_fast` the first failure stops new calls; calls in flight finish, skipped ones
    are emitted as `Aborted`."""

    async def one(i: int) -> None:
        try:
            out = await gate.acall(lambda: stage.acall(values[i], configs[i], gate, native))
        except Exception as exc:  # noqa: BLE001 - per input, as return_exceptions does
            out = exc
            if fail_fast and not isinstance(exc, Aborted):
                gate.abort.set()
        emit(i, out)

    tasks = []
    for i in range(len(values)):  # started a few at a time: the first requests go out while the rest start
        tasks.append(asyncio.ensure_future(one(i)))
        if i % START_WAVE == START_WAVE - 1:
            await asyncio.sleep(0)
    await asyncio.gather(*tasks)



class _Held:
    """Under fail-fast, the first real failure is held back until the calls in flight have ended;
    calls skipped because of it are dropped."""

    def __init__(self, fail_fast: bool) -> None:
        self.fail_fast = fail_fast
        self.first: tuple[int, Exception] | None = None

    def passes(self, i: int, out: Any) -> bool:
        if not (self.fail_fast and isinstance(out, Exception)):
            return True
        if self.first is None and not isinstance(out, Aborted):
            self.first = (i, out)
        return False


def each_sync(stage: PerInputStage, values: Sequence[Any], configs: Sequence[RunnableConfig], in_flight: int,
              *, fail_fast: bool, loop: asyncio.AbstractEventLoop | None = None) -> Iterator[tuple[int, Any]]:
    """`batch`: `run_each` on aaflow's loop thread (or `loop`, from a thread of an async caller);
    `(i, output)` yielded here as each input ends."""
    install_hooks()
    gate = RemoteGate(in_flight, loop)
    done: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
    future = asyncio.run_coroutine_threadsafe(
        run_each(stage, values, configs, gate, lambda i, out: done.put((i, out)), fail_fast=fail_fast), gate.loop)
    held = _Held(fail_fast)
    try:
        for _ in range(len(values)):
            i, out = done.get()
            if held.passes(i, out):
                yield i, out
        if held.first is not None:
            yield held.first
    finally:
        gate.abort.set()  # a consumer that stops early starts nothing new; what is in flight ends
        future.result()
        gate.close()


async def each_async(stage: PerInputStage, values: Sequence[Any], configs: Sequence[RunnableConfig],
                     in_flight: int, *, fail_fast: bool) -> AsyncIterator[tuple[int, Any]]:
    """`abatch`: `run_each` on the caller's loop (its callbacks, contextvars and clients)."""
    install_hooks()
    gate = RemoteGate(in_flight, asyncio.get_running_loop())
    done: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    held = _Held(fail_fast)
    with budget_pool(gate):  # sync graph nodes and tools: the budget's threads, not the loop's 6
        task = asyncio.ensure_future(
            run_each(stage, values, configs, gate, lambda i, out: done.put_nowait((i, out)), fail_fast=fail_fast,
                     native=True))
        try:
            for _ in range(len(values)):
                i, out = await done.get()
                if held.passes(i, out):
                    yield i, out
            if held.first is not None:
                yield held.first
        finally:
            gate.abort.set()
            await task
            gate.close()
