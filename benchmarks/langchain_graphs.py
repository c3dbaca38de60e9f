"""Graph and wrapped-model cases: a hand-built 3-node `StateGraph` and chains whose `ChatOpenAI` is
wrapped in `with_retry` / `with_fallbacks` / `configurable_fields`, stock vs aaflow on loopback.

Every case asks the EchoChat endpoint (answers depend only on the messages) one question per
input, after a fixed latency. Sides: stock `batch` defaults, stock `max_concurrency` = aaflow's
budget, aaflow `batch`, stock `abatch`, aaflow `abatch`. The async sides of all cases share one
event loop per worker process (langchain-openai caches its async client per process, bound to
the first loop that uses it), stock's and aaflow's in workers of their own.
"""
from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any, TypedDict

from benchmarks.langchain_remote import Result, _model, _Runner, _side

KINDS = ("graph", "retry", "fallbacks", "configurable")
_LOOP: Any = None


class QA(TypedDict, total=False):
    question: str
    messages: list[Any]
    answer: str


def state_graph(model: Any) -> Any:
    """Three sync nodes, as a hand-built graph is usually written: prompt, model call, answer."""
    from langchain_core.messages import HumanMessage, SystemMessage
    from langgraph.graph import END, START, StateGraph

    def prepare(s: QA) -> QA:
        return {"messages": [SystemMessage("Be brief."), HumanMessage(s["question"])]}

    def ask(s: QA) -> QA:
        return {"messages": [*s["messages"], model.invoke(s["messages"])]}

    def finish(s: QA) -> QA:
        return {"answer": str(s["messages"][-1].content).strip()}

    g = StateGraph(QA)
    for name, node in (("prepare", prepare), ("ask", ask), ("finish", finish)):
        g.add_node(name, node)
    g.add_edge(START, "prepare")
    g.add_edge("prepare", "ask")
    g.add_edge("ask", "finish")
    g.add_edge("finish", END)
    return g.compile()


def wrapped_chain(kind: str, base_url: str) -> Any:
    """`prompt | wrapped ChatOpenAI | parser`; the fallback model is never needed (the endpoint is up)."""
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import ConfigurableField

    model = _model(base_url)
    if kind == "retry":
        step = model.with_retry(stop_after_attempt=3)
    elif kind == "fallbacks":
        step = model.with_fallbacks([_model(base_url).bind(stop=["\n\n"])])
    elif kind == "configurable":
        step = model.configurable_fields(temperature=ConfigurableField(id="temperature"))
    else:
        raise ValueError(f"kind {kind!r}: expected one of {KINDS}")
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{question}")])
    return prompt | step | StrOutputParser()


def _shared_loop() -> Any:
    """One loop per worker process for every async side in it (see the module docstring)."""
    global _LOOP
    if _LOOP is None:
        from aaflow_core.concurrency import LoopThread

        _LOOP = LoopThread("bench-graphs-async").__enter__()
    return _LOOP


def side(kind: str, base_url: str, mode: str, n: int, in_flight: int) -> Callable[[], Result]:
    """Suite side: `kind` in KINDS; `mode` is stock_default | stock_tuned | aaflow | stock_abatch | aaflow_abatch."""
    runnable = state_graph(_model(base_url)) if kind == "graph" else wrapped_chain(kind, base_url)
    runner = _Runner(runnable, mode.removesuffix("_abatch") if mode.endswith("_abatch") else mode, in_flight)
    if mode.endswith("_abatch"):
        runner.loop = _shared_loop()
    if kind == "configurable":
        runner.config["configurable"] = {"temperature": 0}
    inputs = [{"question": f"question number {i} about the manual"} for i in range(n)]
    run = _side(runner, inputs)

    def collected() -> Result:
        # a full collection of the worker's heap costs ~0.2 s of CPU; unforced, it lands in a random
        # run of a random side (about every other run here), so every run starts from a collected heap
        gc.collect()
        return run()

    return collected


def case_graphs(cfg: Any, pool: Any, log: Callable[[str], None]) -> dict[str, Any]:
    """10. A 3-node StateGraph and `with_retry` / `with_fallbacks` / `configurable_fields` chains, one
    EchoChat call per input on loopback: stock batch (defaults, tuned), aaflow batch, stock and aaflow abatch."""
    from dataclasses import asdict

    from aaflow_core.serve import STATS, EchoChat, ServerThread, create_app
    from benchmarks.harness import side_by_side
    from benchmarks.suite import remote_summary

    n = cfg.graph_inputs
    out: dict[str, Any] = {"inputs": n, "model_calls_per_input": 1, "model_latency_s": cfg.chat_latency_s,
                           "in_flight_limit": n}
    for kind in KINDS:
        app = create_app(chat=EchoChat(), latency_s=cfg.chat_latency_s)
        with ServerThread(app) as server:
            common = {"kind": kind, "base_url": server.base_url, "n": n, "in_flight": n}
            target = "benchmarks.langchain_graphs:side"
            sides: dict[str, tuple[Any, ...]] = {
                "batch defaults": (target, {**common, "mode": "stock_default"}),
                f"batch max_concurrency={n}": (target, {**common, "mode": "stock_tuned"}),
                "AAFlowRunnable.batch": (target, {**common, "mode": "aaflow"}),
                "abatch": (target, {**common, "mode": "stock_abatch"}, "langchain-async-stock-graphs"),
                "AAFlowRunnable.abatch": (target, {**common, "mode": "aaflow_abatch"}, "langchain-async-aaflow-graphs"),
            }
            result = side_by_side(sides, cfg.repeats, pool, log=log)
        pairs = [("batch defaults", "AAFlowRunnable.batch"), (f"batch max_concurrency={n}", "AAFlowRunnable.batch"),
                 ("abatch", "AAFlowRunnable.abatch")]
        out[kind] = {"sides": result, "server": asdict(app[STATS]), **remote_summary(result, pairs)}
    return out
