"""Under `abatch`: graphs, agents with a checkpointer, wrapped and sync-only models give stock's states,
messages and callback events, async handlers run on the caller's loop; graphs of sync nodes get the
budget's threads under `batch` and `abatch` alike."""
from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import pytest
from langchain.agents import create_agent
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from aaflow_adapters.langchain import AAFlowRunnable

from .agents import Peak, SyncToolCallingChat, ToolCallingChat, lookup, plain
from .conftest import Recorder
from .test_graphs import INPUTS, LoopRecorder, State
from .test_wrappers import INPUTS as CHAIN_INPUTS
from .test_wrappers import configurable_chain, fallback_chain, retry_chain, sync_only_chain

DEFAULT_EXECUTOR = min(32, (os.cpu_count() or 1) + 4)  # asyncio's default executor size


def sync_node_graph(peak: Peak, threads: list[str]) -> Any:
    """Three sync nodes; the middle one blocks, as a node calling a model synchronously does."""

    def upper(s: State) -> dict[str, Any]:
        return {"text": s["text"].upper(), "trail": ["upper"]}

    def slow(s: State) -> dict[str, Any]:
        threads.append(threading.current_thread().name)
        with peak:
            time.sleep(0.1)
        return {"text": f"{s['text']}!", "trail": ["slow"]}

    def done(s: State) -> dict[str, Any]:
        return {"trail": ["done"]}

    g = StateGraph(State)
    for name, node in (("upper", upper), ("slow", slow), ("done", done)):
        g.add_node(name, node)
    g.add_edge(START, "upper")
    g.add_edge("upper", "slow")
    g.add_edge("slow", "done")
    g.add_edge("done", END)
    return g.compile()


def test_graph_abatch_runs_sync_nodes_on_the_budget_and_leaves_the_loop_as_it_was() -> None:
    peak, threads = Peak(), []
    graph = sync_node_graph(peak, threads)
    n = DEFAULT_EXECUTOR + 16
    inputs = [{"text": f"q{i}", "trail": []} for i in range(n)]

    async def run() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        stock, fast = LoopRecorder(), LoopRecorder()
        expected = await graph.abatch(inputs, {"callbacks": [stock]})
        stock_peak, stock_threads = peak.peak, set(threads)
        peak.peak = 0
        threads.clear()

        async def bystander() -> str:  # another task of the caller's loop, during aaflow's run
            while peak.now == 0:
                await asyncio.sleep(0.005)
            return await loop.run_in_executor(None, lambda: threading.current_thread().name)

        got, other = await asyncio.gather(AAFlowRunnable(graph, max_concurrency=n).abatch(inputs, {"callbacks": [fast]}),
                                          bystander())
        return {"expected": expected, "got": got, "stock": stock, "fast": fast, "loop": id(loop),
                "stock_peak": stock_peak, "stock_threads": stock_threads, "other": other,
                "patched": "run_in_executor" in vars(loop)}

    r = asyncio.run(run())
    assert r["got"] == r["expected"]
    assert r["fast"].inner.events() == r["stock"].inner.events()
    assert r["stock"].loops == r["fast"].loops == {r["loop"]}
    assert r["stock_peak"] <= DEFAULT_EXECUTOR < peak.peak <= n  # stock: the loop's default executor
    assert all(name.startswith("aaflow-abatch") for name in threads)
    assert not any(name.startswith("aaflow-abatch") for name in r["stock_threads"] | {r["other"]})
    assert not r["patched"]  # the loop's own run_in_executor once the run is over


def test_sync_node_graph_batch_runs_its_own_invoke_on_the_budget() -> None:
    peak, threads = Peak(), []
    graph = sync_node_graph(peak, threads)
    n = DEFAULT_EXECUTOR + 16
    inputs = [{"text": f"q{i}", "trail": []} for i in range(n)]
    stock, fast = Recorder(), Recorder()
    expected = graph.batch(inputs, {"callbacks": [stock]})
    assert peak.peak <= DEFAULT_EXECUTOR  # stock's batch: a pool of the default size
    peak.peak = 0
    assert AAFlowRunnable(graph, max_concurrency=n).batch(inputs, {"callbacks": [fast]}) == expected
    assert fast.events() == stock.events()
    assert DEFAULT_EXECUTOR < peak.peak <= n


def test_agent_abatch_with_checkpointer_matches_stock() -> None:
    async def run(runner: Any, agent: Any, recorder: LoopRecorder) -> list[Any]:
        configs = [{"configurable": {"thread_id": f"t{i}"}, "callbacks": [recorder]} for i in range(len(INPUTS))]
        await runner.abatch(INPUTS, configs)
        follow = [{"messages": [("human", "no tool, thanks")]} for _ in INPUTS]
        finals = await runner.abatch(follow, configs)
        states = [await agent.aget_state(c) for c in configs]
        return [plain(s["messages"]) for s in finals] + [plain(s.values["messages"]) for s in states]

    async def both() -> tuple[Any, Any, LoopRecorder, LoopRecorder, int]:
        stock_agent = create_agent(ToolCallingChat(), tools=[lookup], checkpointer=InMemorySaver())
        fast_agent = create_agent(ToolCallingChat(), tools=[lookup], checkpointer=InMemorySaver())
        stock, fast = LoopRecorder(), LoopRecorder()
        expected = await run(stock_agent, stock_agent, stock)
        got = await run(AAFlowRunnable(fast_agent), fast_agent, fast)
        return expected, got, stock, fast, id(asyncio.get_running_loop())

    expected, got, stock, fast, loop = asyncio.run(both())
    assert len(expected[0]) == 6 and got == expected
    assert fast.inner.events() == stock.inner.events()
    assert stock.loops == fast.loops == {loop}


def test_sync_only_agent_abatch_matches_stock_with_more_calls_in_flight() -> None:
    peak = Peak()
    agent = create_agent(SyncToolCallingChat(peak=peak), tools=[lookup])

    async def both() -> tuple[Any, Any, LoopRecorder, LoopRecorder, int]:
        stock, fast = LoopRecorder(), LoopRecorder()
        expected = await agent.abatch(INPUTS, {"callbacks": [stock]})
        assert peak.peak <= DEFAULT_EXECUTOR
        peak.peak = 0
        got = await AAFlowRunnable(agent, max_concurrency=24).abatch(INPUTS, {"callbacks": [fast]})
        return expected, got, stock, fast, id(asyncio.get_running_loop())

    expected, got, stock, fast, loop = asyncio.run(both())
    assert [plain(s["messages"]) for s in got] == [plain(s["messages"]) for s in expected]
    assert fast.inner.events() == stock.inner.events()
    assert stock.loops == fast.loops == {loop}
    assert peak.peak <= 24


@pytest.mark.parametrize("build", [retry_chain, fallback_chain, configurable_chain, sync_only_chain])
def test_wrapped_model_chains_abatch_match_stock(build: Any) -> None:
    config = {"configurable": {"delay": 0.02}}

    async def both() -> tuple[Any, Any, LoopRecorder, LoopRecorder, int]:
        stock, fast = LoopRecorder(), LoopRecorder()
        expected = await build(Peak()).abatch(CHAIN_INPUTS, {**config, "callbacks": [stock]})
        got = await AAFlowRunnable(build(Peak()), batch_size=8, max_concurrency=30).abatch(
            CHAIN_INPUTS, {**config, "callbacks": [fast]})
        return expected, got, stock, fast, id(asyncio.get_running_loop())

    expected, got, stock, fast, loop = asyncio.run(both())
    assert got == expected
    assert fast.inner.events() == stock.inner.events()
    assert stock.loops == fast.loops == {loop}


@pytest.mark.parametrize("wrap", ["retry", "configurable", "sync-only"])
def test_lone_wrapped_model_abatch_matches_stock(wrap: str) -> None:
    from langchain_core.runnables import ConfigurableField

    def build() -> Any:
        model = ToolCallingChat()
        if wrap == "sync-only":  # stock's abatch: ainvoke, its callbacks on the caller's loop
            return SyncToolCallingChat()
        if wrap == "retry":
            return model.with_retry(stop_after_attempt=2)
        return model.configurable_fields(delay_s=ConfigurableField(id="delay"))

    prompts = [f"no tool: {q['q']}" for q in CHAIN_INPUTS]

    async def both() -> tuple[Any, Any, LoopRecorder, LoopRecorder, int]:
        stock, fast = LoopRecorder(), LoopRecorder()
        config = {"configurable": {"delay": 0.01}}
        expected = await build().abatch(prompts, {**config, "callbacks": [stock]})
        got = await AAFlowRunnable(build()).abatch(prompts, {**config, "callbacks": [fast]})
        return expected, got, stock, fast, id(asyncio.get_running_loop())

    expected, got, stock, fast, loop = asyncio.run(both())
    assert plain(got) == plain(expected)
    assert fast.inner.events() == stock.inner.events()
    assert stock.loops == fast.loops == {loop}
