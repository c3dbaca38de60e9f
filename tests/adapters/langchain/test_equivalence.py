"""AAFlowRunnable(chain) gives what chain gives: batch, invoke, stream and async forms."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough

from aaflow_adapters.langchain import AAFlowRunnable
from aaflow_core import ConfigError

from .conftest import QUESTIONS, rag_chain


def simple_chain() -> Any:
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "Q{n}: {q}")])
    return prompt | ParrotFakeChatModel() | StrOutputParser()


INPUTS = [{"n": i, "q": q} for i, q in enumerate(QUESTIONS * 2)]


async def collect(agen: Any) -> list[Any]:
    return [item async for item in agen]


def test_prompt_model_parser_all_forms() -> None:
    chain = simple_chain()
    fast = AAFlowRunnable(chain, batch_size=4)
    expected = chain.batch(INPUTS)
    assert fast.batch(INPUTS) == expected
    assert asyncio.run(fast.abatch(INPUTS)) == expected
    assert sorted(fast.batch_as_completed(INPUTS)) == list(enumerate(expected))
    assert sorted(asyncio.run(collect(fast.abatch_as_completed(INPUTS)))) == list(enumerate(expected))
    assert fast.invoke(INPUTS[3]) == chain.invoke(INPUTS[3]) == expected[3]
    assert list(fast.stream(INPUTS[5])) == list(chain.stream(INPUTS[5]))
    assert asyncio.run(collect(fast.astream(INPUTS[5]))) == list(chain.stream(INPUTS[5]))
    assert fast.batch([]) == [] and fast.batch(INPUTS[:1]) == expected[:1]


def test_rag_chain_real_embeddings_and_faiss(faiss_store: Any) -> None:
    retriever = faiss_store.as_retriever(search_kwargs={"k": 3})
    chain = rag_chain(retriever)
    expected = chain.batch(QUESTIONS)
    assert AAFlowRunnable(chain, batch_size=5).batch(QUESTIONS) == expected
    # the retriever step alone: the same documents, in the same order, for every query
    docs = AAFlowRunnable(retriever, batch_size=5).batch(QUESTIONS)
    assert [[d.id for d in ds] for ds in docs] == [[d.id for d in ds] for ds in retriever.batch(QUESTIONS)]
    assert all(len(ds) == 3 for ds in docs)


def test_rag_chain_is_deterministic(faiss_store: Any) -> None:
    chain = AAFlowRunnable(rag_chain(faiss_store.as_retriever()), batch_size=4)
    assert chain.batch(QUESTIONS) == chain.batch(QUESTIONS)


def test_parallel_fan_out_and_assign() -> None:
    model = ParrotFakeChatModel()
    fan = RunnableParallel(
        short=ChatPromptTemplate.from_template("short: {q}") | model | StrOutputParser(),
        long=ChatPromptTemplate.from_template("long: {q} ({n})") | model | StrOutputParser(),
        same=RunnablePassthrough(),
    ) | RunnablePassthrough.assign(both=lambda d: d["short"] + " / " + d["long"])
    expected = fan.batch(INPUTS)
    assert AAFlowRunnable(fan, batch_size=3).batch(INPUTS) == expected
    assert expected[7]["both"] == f"short: {INPUTS[7]['q']} / long: {INPUTS[7]['q']} (7)"


def fails_on_multiples_of_five(d: dict[str, Any]) -> dict[str, Any]:
    if d["n"] % 5 == 0:
        raise ValueError(f"input {d['n']} rejected")
    return d


def test_failing_step_return_exceptions() -> None:
    chain = RunnableLambda(fails_on_multiples_of_five) | simple_chain()
    expected = chain.batch(INPUTS, return_exceptions=True)
    got = AAFlowRunnable(chain, batch_size=4).batch(INPUTS, return_exceptions=True)
    assert [repr(x) for x in got] == [repr(x) for x in expected]
    assert sum(isinstance(x, ValueError) for x in got) == len(range(0, len(INPUTS), 5))
    with pytest.raises(ValueError, match="input 0 rejected"):
        AAFlowRunnable(chain).batch(INPUTS)


def test_failure_inside_parallel_branch() -> None:
    fan = RunnableParallel(ok=RunnablePassthrough(), bad=RunnableLambda(fails_on_multiples_of_five))
    expected = fan.batch(INPUTS[:12], return_exceptions=True)
    got = AAFlowRunnable(fan, batch_size=5).batch(INPUTS[:12], return_exceptions=True)
    assert [repr(x) for x in got] == [repr(x) for x in expected]


def test_config_and_kwargs_reach_steps() -> None:
    def read_config(x: dict[str, Any], config: Any) -> str:
        return f"{x['q']}|{config['configurable'].get('user')}|{sorted(config['tags'])}|{config['metadata'].get('m')}"

    chain = RunnableLambda(read_config) | StrOutputParser()
    config = {"configurable": {"user": "ada"}, "tags": ["t1"], "metadata": {"m": 7}}
    assert AAFlowRunnable(chain).batch(INPUTS[:6], config) == chain.batch(INPUTS[:6], config)
    bound = ParrotFakeChatModel().bind(stop=["x"]) | StrOutputParser()
    assert AAFlowRunnable(bound).batch(QUESTIONS[:3]) == bound.batch(QUESTIONS[:3])


def test_bad_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        AAFlowRunnable(simple_chain(), batch_size=0)
    with pytest.raises(ConfigError, match="ranks"):
        AAFlowRunnable(simple_chain(), ranks=4)
