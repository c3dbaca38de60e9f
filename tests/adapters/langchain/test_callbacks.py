"""The same callback events arrive, and the wrapper keeps routing batch through aaflow."""
from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from aaflow_adapters.langchain import AAFlowRunnable

from .conftest import QUESTIONS, Recorder, rag_chain


def test_callback_events_match_stock(faiss_store: Any) -> None:
    chain = rag_chain(faiss_store.as_retriever(search_kwargs={"k": 2}))
    chain = RunnablePassthrough.assign(question=lambda d: d["q"]) | (lambda d: d["question"]) | chain
    inputs = [{"q": q} for q in QUESTIONS[:7]]
    config = {"tags": ["user-tag"], "metadata": {"who": "test"}, "run_name": "my-rag"}
    stock, fast = Recorder(), Recorder()
    chain.batch(inputs, {**config, "callbacks": [stock]})
    AAFlowRunnable(chain, batch_size=3).batch(inputs, {**config, "callbacks": [fast]})
    assert fast.events() == stock.events()
    names = {e[1] for e in stock.events()}
    assert {"my-rag", "VectorStoreRetriever", "RunnableAssign<question>", "RunnableParallel<context,question>"} <= names
    assert len([e for e in fast.events() if e[0].startswith("chat_start:")]) == len(inputs)
    assert len([e for e in stock.events() if e[0] == "chain_start" and e[1] == "my-rag"]) == len(inputs)


def test_callback_events_with_failures() -> None:
    def bad(d: str) -> str:
        if "JSON" in d:
            raise KeyError(d)
        return d

    chain = RunnableLambda(bad) | ParrotFakeChatModel() | StrOutputParser()
    stock, fast = Recorder(), Recorder()
    chain.batch(QUESTIONS, {"callbacks": [stock]}, return_exceptions=True)
    AAFlowRunnable(chain, batch_size=4).batch(QUESTIONS, {"callbacks": [fast]}, return_exceptions=True)
    assert fast.events() == stock.events()
    assert any(e[0] == "chain_error:KeyError" for e in fast.events())


class CountingChat(ParrotFakeChatModel):
    """Counts sync and async generations and the most async calls in flight at once."""

    calls: dict[str, int] = {}

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.calls["sync"] = self.calls.get("sync", 0) + 1
        return super()._generate(messages, *args, **kwargs)

    async def _agenerate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        calls = self.calls
        calls["async"] = calls.get("async", 0) + 1
        calls["now"] = calls.get("now", 0) + 1
        calls["peak"] = max(calls.get("peak", 0), calls["now"])
        await asyncio.sleep(0.02)
        calls["now"] -= 1
        return super()._generate(messages, *args, **kwargs)


def test_wrappers_route_batch_through_aaflow_with_a_global_budget() -> None:
    model = CountingChat()
    model.calls = {}
    chain = model | StrOutputParser()
    expected = chain.batch(QUESTIONS * 4)
    assert model.calls == {"sync": len(QUESTIONS) * 4}
    fast = AAFlowRunnable(chain, batch_size=8, max_concurrency=40)
    for wrapped in (fast.with_config(tags=["x"]), fast.with_retry(stop_after_attempt=2), fast.bind()):
        model.calls.clear()
        assert wrapped.batch(QUESTIONS * 4) == expected
        assert model.calls.get("sync", 0) == 0 and model.calls["async"] == len(QUESTIONS) * 4
        assert 6 < model.calls["peak"] <= 40  # above LangChain's default pool (6 on 2 cores), within budget
    model.calls.clear()
    fast.batch(QUESTIONS * 4, {"max_concurrency": 5})
    assert model.calls["peak"] <= 5


def test_plan_names_every_step() -> None:
    chain = RunnableLambda(lambda x: x) | ParrotFakeChatModel() | StrOutputParser()
    plan = AAFlowRunnable(chain, batch_size=4, max_concurrency=32).plan()
    assert [op.name for op in plan.ops] == ["1:RunnableLambda", "2:ParrotFakeChatModel", "3:StrOutputParser"]
    assert [op.workers for op in plan.ops] == [1, 8, 1]
