"""Agents and graphs: the same final states, messages and callback events as stock, more calls in flight."""
from __future__ import annotations

import asyncio
import math
import operator
import time
from typing import Annotated, Any, TypedDict
from uuid import UUID

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import AsyncCallbackHandler
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from aaflow_adapters.langchain import AAFlowRunnable

from .agents import Peak, SyncToolCallingChat, ToolCallingChat, lookup, plain
from .conftest import QUESTIONS, Recorder

INPUTS = [{"messages": [("human", f"{q} #{i}")]} for i, q in enumerate(QUESTIONS * 2)]


def test_agent_matches_stock_with_more_calls_in_flight() -> None:
    peak = Peak()
    agent = create_agent(ToolCallingChat(peak=peak), tools=[lookup])
    stock, fast = Recorder(), Recorder()
    expected = agent.batch(INPUTS, {"callbacks": [stock]})
    assert peak.peak <= 6 and peak.calls == 2 * len(INPUTS)  # stock: a pool of 6 threads on 2 cores
    peak.peak = 0
    got = AAFlowRunnable(agent, max_concurrency=30).batch(INPUTS, {"callbacks": [fast]})
    assert [plain(s["messages"]) for s in got] == [plain(s["messages"]) for s in expected]
    assert any(m[0] == "tool" for m in plain(got[0]["messages"]))
    assert fast.events() == stock.events()
    assert 6 < peak.peak <= 30


def test_agent_with_checkpointer_keeps_each_thread() -> None:
    def run(runner: Any, agent: Any, recorder: Recorder) -> list[Any]:
        configs = [{"configurable": {"thread_id": f"t{i}"}, "callbacks": [recorder]} for i in range(len(INPUTS))]
        runner.batch(INPUTS, configs)
        follow = [{"messages": [("human", "no tool, thanks")]} for _ in INPUTS]
        finals = runner.batch(follow, configs)  # the second turn sees the first one's messages
        return [plain(s["messages"]) for s in finals] + [plain(agent.get_state(c).values["messages"]) for c in configs]

    stock_agent = create_agent(ToolCallingChat(), tools=[lookup], checkpointer=InMemorySaver())
    fast_agent = create_agent(ToolCallingChat(), tools=[lookup], checkpointer=InMemorySaver())
    stock, fast = Recorder(), Recorder()
    expected = run(stock_agent, stock_agent, stock)
    assert len(expected[0]) == 6  # question, tool call, tool answer, answer, second question, direct answer
    assert run(AAFlowRunnable(fast_agent), fast_agent, fast) == expected
    assert fast.events() == stock.events()


def test_sync_only_chat_model_runs_on_a_pool_sized_to_the_budget() -> None:
    peak = Peak()
    agent = create_agent(SyncToolCallingChat(peak=peak), tools=[lookup])
    stock, fast = Recorder(), Recorder()
    expected = agent.batch(INPUTS, {"callbacks": [stock]})
    peak.peak = 0
    got = AAFlowRunnable(agent, max_concurrency=24).batch(INPUTS, {"callbacks": [fast]})
    assert [plain(s["messages"]) for s in got] == [plain(s["messages"]) for s in expected]
    assert fast.events() == stock.events()
    assert 6 < peak.peak <= 24


class State(TypedDict):
    text: str
    trail: Annotated[list[str], operator.add]


def three_nodes() -> Any:
    def upper(s: State) -> dict[str, Any]:
        return {"text": s["text"].upper(), "trail": ["upper"]}

    def count(s: State) -> dict[str, Any]:
        time.sleep(0.01)
        return {"text": f"{s['text']} ({len(s['text'])})", "trail": ["count"]}

    def done(s: State) -> dict[str, Any]:
        return {"trail": ["done"]}

    g = StateGraph(State)
    g.add_node("upper", upper)
    g.add_node("count", count)
    g.add_node("done", done)
    g.add_edge(START, "upper")
    g.add_edge("upper", "count")
    g.add_edge("count", "done")
    g.add_edge("done", END)
    return g.compile()


def test_state_graph_matches_stock() -> None:
    graph = three_nodes()
    inputs = [{"text": q, "trail": []} for q in QUESTIONS]
    stock, fast = Recorder(), Recorder()
    expected = graph.batch(inputs, {"callbacks": [stock], "recursion_limit": 10})
    assert AAFlowRunnable(graph).batch(inputs, {"callbacks": [fast], "recursion_limit": 10}) == expected
    assert fast.events() == stock.events()


def test_graph_errors_as_stock() -> None:
    graph = three_nodes()
    inputs = [{"text": q, "trail": []} for q in QUESTIONS[:4]] + [{"trail": []}]  # no "text": a KeyError
    expected = graph.batch(inputs, return_exceptions=True)
    got = AAFlowRunnable(graph).batch(inputs, return_exceptions=True)
    assert got[:4] == expected[:4] and type(got[4]) is type(expected[4]) and str(got[4]) == str(expected[4])
    with pytest.raises(type(expected[4])):
        AAFlowRunnable(graph).batch(inputs)


class LoopRecorder(AsyncCallbackHandler):
    """An async handler: which loop each event ran on, and the events (as Recorder)."""

    def __init__(self) -> None:
        self.loops: set[int] = set()
        self.inner = Recorder()

    async def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kw: Any) -> None:
        self.loops.add(id(asyncio.get_running_loop()))
        self.inner.on_chain_start(serialized, inputs, run_id=run_id, **kw)

    async def on_chain_end(self, outputs: Any, *, run_id: UUID, **kw: Any) -> None:
        self.loops.add(id(asyncio.get_running_loop()))
        self.inner.on_chain_end(outputs, run_id=run_id, **kw)

    async def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, **kw: Any) -> None:
        self.loops.add(id(asyncio.get_running_loop()))
        self.inner.on_chat_model_start(serialized, messages, run_id=run_id, **kw)

    async def on_llm_end(self, response: Any, *, run_id: UUID, **kw: Any) -> None:
        self.loops.add(id(asyncio.get_running_loop()))
        self.inner.on_llm_end(response, run_id=run_id, **kw)


def test_abatch_runs_async_handlers_on_the_callers_loop() -> None:
    agent = create_agent(ToolCallingChat(), tools=[lookup])

    async def both() -> tuple[Any, Any, LoopRecorder, LoopRecorder, int]:
        stock, fast = LoopRecorder(), LoopRecorder()
        expected = await agent.abatch(INPUTS, {"callbacks": [stock]})
        got = await AAFlowRunnable(agent).abatch(INPUTS, {"callbacks": [fast]})
        return expected, got, stock, fast, id(asyncio.get_running_loop())

    expected, got, stock, fast, loop = asyncio.run(both())
    assert [plain(s["messages"]) for s in got] == [plain(s["messages"]) for s in expected]
    assert fast.inner.events() == stock.inner.events()
    assert stock.loops == fast.loops == {loop}


def test_retriever_tool_calls_of_100_agents_take_ceil_100_over_the_batch_embedding_calls(
        faiss_store: Any, hf_embeddings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_core.tools import create_retriever_tool

    from aaflow_adapters.langchain import retriever_batching

    calls: list[int] = []
    encode = hf_embeddings._client.encode

    def counted(texts: Any, **kwargs: Any) -> Any:
        calls.append(len(texts))
        return encode(texts, **kwargs)

    monkeypatch.setattr(hf_embeddings._client, "encode", counted)
    # a window no arrival spread on a loaded machine outlasts: batches are cut by size alone
    monkeypatch.setattr(retriever_batching, "MAX_WAIT_MS", 2000.0)
    tool = create_retriever_tool(faiss_store.as_retriever(search_kwargs={"k": 2}), "search_docs", "Search the docs.")
    agent = create_agent(ToolCallingChat(), tools=[tool])
    inputs = [{"messages": [("human", f"{QUESTIONS[i % len(QUESTIONS)]} #{i}")]} for i in range(100)]
    stock, fast = Recorder(), Recorder()
    expected = agent.batch(inputs, {"callbacks": [stock]})
    assert len(calls) == len(inputs)  # stock: one embedding call per tool call
    calls.clear()
    got = AAFlowRunnable(agent).batch(inputs, {"callbacks": [fast]})
    assert [plain(s["messages"]) for s in got] == [plain(s["messages"]) for s in expected]  # tool outputs too
    assert len(plain(got[0]["messages"])[2][1]) > 200  # the tool answered with document texts
    assert fast.events() == stock.events()
    assert sum(calls) == len(inputs) and len(calls) <= math.ceil(len(inputs) / retriever_batching.MAX_BATCH)
