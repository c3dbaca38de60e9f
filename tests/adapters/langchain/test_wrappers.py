"""Wrapped models, branches, custom Runnables and sync-only models: stock's outputs and events, the budget kept."""
from __future__ import annotations

import time
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import ConfigurableField, Runnable, RunnableBranch, RunnableConfig, RunnableLambda

from aaflow_adapters.langchain import AAFlowRunnable

from .agents import Peak, SyncToolCallingChat, ToolCallingChat
from .conftest import QUESTIONS, Recorder

PROMPT = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "no tool: {q}")])
INPUTS = [{"q": f"{q} #{i}"} for i, q in enumerate(QUESTIONS * 2)]


class FlakyChat(ToolCallingChat):
    """Fails the first attempt at every question about JSON (per question, so order does not matter)."""

    seen: set[str] = set()

    def _check(self, messages: list[BaseMessage]) -> None:
        text = str(messages[-1].content)
        if "JSON" in text and text not in self.seen:
            self.seen.add(text)
            raise ConnectionError(f"flaky: {text}")

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self._check(messages)
        return super()._generate(messages, *args, **kwargs)

    async def _agenerate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self._check(messages)
        return await super()._agenerate(messages, *args, **kwargs)


class BrokenChat(ToolCallingChat):
    """Down for every question about shlex."""

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        if "shlex" in str(messages[-1].content):
            raise ValueError("primary is down")
        return super()._generate(messages, *args, **kwargs)

    async def _agenerate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        if "shlex" in str(messages[-1].content):
            raise ValueError("primary is down")
        return await super()._agenerate(messages, *args, **kwargs)


class Slow(Runnable[Any, str]):
    """A custom Runnable with no batch of its own (stock: a pool of 6 threads over invoke)."""

    def __init__(self, peak: Peak) -> None:
        self.peak = peak

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> str:
        with self.peak:
            time.sleep(0.02)
        return str(input).upper()


def retry_chain(peak: Peak) -> Any:
    model = FlakyChat(peak=peak)
    model.seen = set()
    return PROMPT | model.with_retry(stop_after_attempt=2, wait_exponential_jitter=False) | StrOutputParser()


def fallback_chain(peak: Peak) -> Any:
    return PROMPT | BrokenChat(peak=peak).with_fallbacks([ToolCallingChat(peak=peak)]) | StrOutputParser()


def configurable_chain(peak: Peak) -> Any:
    model = ToolCallingChat(peak=peak).configurable_fields(delay_s=ConfigurableField(id="delay"))
    return PROMPT | model | StrOutputParser()


def branch_chain(peak: Peak) -> Any:
    branch = RunnableBranch((lambda m: "JSON" in m.to_string(), ToolCallingChat(peak=peak)),
                            SyncToolCallingChat(peak=peak))
    return PROMPT | branch | StrOutputParser()


def custom_chain(peak: Peak) -> Any:
    return RunnableLambda(lambda d: d["q"]) | Slow(peak)


def sync_only_chain(peak: Peak) -> Any:
    return PROMPT | SyncToolCallingChat(peak=peak) | StrOutputParser()


@pytest.mark.parametrize("build", [retry_chain, fallback_chain, configurable_chain, branch_chain, custom_chain,
                                   sync_only_chain])
def test_same_outputs_and_events_as_stock_with_the_budget(build: Any) -> None:
    config: RunnableConfig = {"configurable": {"delay": 0.02}}
    peak = Peak()
    stock, fast = Recorder(), Recorder()
    expected = build(peak).batch(INPUTS, {**config, "callbacks": [stock]})
    peak.peak = 0
    got = AAFlowRunnable(build(peak), batch_size=8, max_concurrency=30).batch(INPUTS, {**config, "callbacks": [fast]})
    assert got == expected
    assert fast.events() == stock.events()
    assert 6 < peak.peak <= 30


def test_first_error_raised_before_any_model_call() -> None:
    def bad(d: dict[str, str]) -> dict[str, str]:
        if "shlex" in d["q"]:
            raise KeyError(d["q"])
        return d

    peak = Peak()
    chain = RunnableLambda(bad) | PROMPT | ToolCallingChat(peak=peak) | StrOutputParser()
    with pytest.raises(KeyError) as stock:
        chain.batch(INPUTS)
    assert peak.calls == 0  # stock's step barrier: the lambda fails before any model call
    stock_events, fast_events = Recorder(), Recorder()
    with pytest.raises(KeyError) as fast:
        AAFlowRunnable(chain, batch_size=4).batch(INPUTS, {"callbacks": [fast_events]})
    assert str(fast.value) == str(stock.value) and peak.calls == 0
    with pytest.raises(KeyError):
        chain.batch(INPUTS, {"callbacks": [stock_events]})
    # stock cancels the lambda calls not yet started when the first error surfaces (timing decides
    # how many); every input's root run ends with the error on both sides
    roots = [e for e in fast_events.events() if e[3] is None]
    assert roots == [e for e in stock_events.events() if e[3] is None]
    assert sum(e[0] == "chain_error:KeyError" for e in roots) == len(INPUTS)


def test_first_remote_failure_stops_new_calls() -> None:
    peak = Peak()
    chain = PROMPT | BrokenChat(peak=peak, delay_s=0.01) | StrOutputParser()
    inputs = INPUTS * 4
    with pytest.raises(ValueError, match="primary is down"):
        AAFlowRunnable(chain, batch_size=4, max_concurrency=4).batch(inputs)
    assert peak.calls < len(inputs) // 2  # calls in flight end; nothing new starts


def test_chain_abatch_runs_async_handlers_on_the_callers_loop() -> None:
    import asyncio

    from langchain_core.runnables import RunnablePassthrough

    from .test_graphs import LoopRecorder

    chain = (RunnablePassthrough.assign(n=lambda d: len(d["q"])) | {"q": lambda d: d["q"], "n": lambda d: d["n"]}
             | PROMPT | ToolCallingChat() | StrOutputParser())

    async def both() -> tuple[Any, Any, LoopRecorder, LoopRecorder, int]:
        stock, fast = LoopRecorder(), LoopRecorder()
        expected = await chain.abatch(INPUTS, {"callbacks": [stock]})
        got = await AAFlowRunnable(chain, batch_size=4).abatch(INPUTS, {"callbacks": [fast]})
        return expected, got, stock, fast, id(asyncio.get_running_loop())

    expected, got, stock, fast, loop = asyncio.run(both())
    assert got == expected
    assert fast.inner.events() == stock.inner.events()
    assert stock.loops == fast.loops == {loop}
