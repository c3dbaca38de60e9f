"""Prompts and parsers skip callback runs only when no handler could see them: same outputs, same errors,
and with any handler (or debug output) every input's run opens as in stock."""
from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from langchain_core.globals import set_debug
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda

from aaflow_adapters.langchain import AAFlowRunnable

from .conftest import QUESTIONS, Recorder

PROMPT = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
CHAIN = PROMPT | RunnableLambda(lambda pv: AIMessage(content=pv.to_messages()[-1].content.upper())) | StrOutputParser()
INPUTS = [{"q": q} for q in QUESTIONS]


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many callback runs each step type opened through `_call_with_config`."""
    seen: Counter[str] = Counter()
    stock = Runnable._call_with_config

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen[type(self).__name__] += 1
        return stock(self, *args, **kwargs)

    monkeypatch.setattr(Runnable, "_call_with_config", counted)
    return seen


def test_without_handlers_outputs_and_errors_are_stocks_and_no_runs_open(runs: Counter[str]) -> None:
    inputs = INPUTS + [{"question": "wrong key"}]
    expected = CHAIN.batch(inputs, return_exceptions=True)
    runs.clear()
    got = AAFlowRunnable(CHAIN, batch_size=3).batch(inputs, return_exceptions=True)
    assert got[:-1] == expected[:-1] and got[0] == QUESTIONS[0].upper()
    assert type(got[-1]) is type(expected[-1]) and str(got[-1]) == str(expected[-1])  # the missing variable, named
    assert runs["ChatPromptTemplate"] == 0 and runs["StrOutputParser"] == 0


def test_with_a_handler_every_run_opens_and_events_equal_stock(runs: Counter[str]) -> None:
    stock, fast = Recorder(), Recorder()
    expected = CHAIN.batch(INPUTS, {"callbacks": [stock]})
    runs.clear()
    assert AAFlowRunnable(CHAIN, batch_size=3).batch(INPUTS, {"callbacks": [fast]}) == expected
    assert runs["ChatPromptTemplate"] == len(INPUTS) == runs["StrOutputParser"]
    assert fast.events() == stock.events()


def test_debug_output_counts_as_a_handler(runs: Counter[str], capsys: pytest.CaptureFixture[str]) -> None:
    set_debug(True)
    try:
        AAFlowRunnable(CHAIN).batch(INPUTS[:2])
    finally:
        set_debug(False)
    assert runs["ChatPromptTemplate"] == 2 == runs["StrOutputParser"]
    assert "[chain/start]" in capsys.readouterr().out
