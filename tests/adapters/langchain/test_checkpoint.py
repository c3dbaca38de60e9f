"""`AAFlowRunnable(chain, checkpoint=DIR)` in one process: resume, retries of failures, refusals, damage."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel

from aaflow_adapters.langchain import AAFlowRunnable
from aaflow_core.errors import CheckpointError
from aaflow_core.stores.journal import JOURNAL_FILE

from .conftest import Recorder

INPUTS = [{"q": f"question {i}"} for i in range(12)]


class Flaky:
    """A step that fails the inputs named in `failing` and counts its calls per input."""

    def __init__(self, failing: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.failing = set(failing)
        self.calls: list[str] = []

    def __call__(self, x: dict[str, str]) -> dict[str, str]:
        self.calls.append(x["q"])
        if x["q"] in self.failing:
            raise ValueError(f"no answer for {x['q']}")
        return x


def rich_chain(step: Flaky) -> Any:
    """Outputs with messages, documents and nested dicts: what must round-trip exactly."""
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    return RunnableLambda(step) | RunnableParallel(
        message=prompt | ParrotFakeChatModel(),
        docs=RunnableLambda(lambda x: [Document(page_content=x["q"], metadata={"n": len(x["q"]), "tags": ["a"]})]),
        plain=RunnableLambda(lambda x: {"q": x["q"], "words": x["q"].split(), "score": 0.5, "none": None}),
    )


def no_id(out: Any) -> Any:
    """An output of `rich_chain` without its message id (random per run, in stock too)."""
    return out if isinstance(out, Exception) else {**out, "message": out["message"].model_copy(update={"id": None})}


def snapshot(work: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(work.iterdir()) if p.name != "lock"}


def test_resume_returns_committed_outputs_and_retries_failures(tmp_path: Path) -> None:
    step = Flaky({"question 3", "question 7"})
    stock = rich_chain(Flaky({"question 3", "question 7"})).batch(INPUTS, return_exceptions=True)
    wrapped = AAFlowRunnable(rich_chain(step), checkpoint=tmp_path / "ck", batch_size=5)
    first = wrapped.batch(INPUTS, return_exceptions=True)
    assert [type(o) for o in first] == [type(o) for o in stock]
    assert [no_id(o) for o in first if not isinstance(o, Exception)] == [
        no_id(o) for o in stock if not isinstance(o, Exception)]
    assert len(step.calls) == 12
    step.failing.clear()
    second = wrapped.batch(INPUTS, return_exceptions=True)
    assert sorted(step.calls[12:]) == ["question 3", "question 7"]  # only the failures ran again
    # resumed outputs are the very values the first call returned (message ids included), revived
    assert all(second[i] == first[i] for i in range(12) if i not in (3, 7))
    assert [no_id(o) for o in second] == [no_id(o) for o in rich_chain(Flaky()).batch(INPUTS)]
    assert type(second[0]["message"]) is type(first[0]["message"]) and isinstance(second[0]["docs"][0], Document)
    third = wrapped.batch(INPUTS)
    assert third == second and len(step.calls) == 14  # nothing left to run


def test_without_return_exceptions_raises_and_keeps_what_finished(tmp_path: Path) -> None:
    step = Flaky({"question 11"})
    wrapped = AAFlowRunnable(rich_chain(step), checkpoint=tmp_path / "ck", batch_size=4)
    with pytest.raises(ValueError, match="question 11"):
        wrapped.batch(INPUTS)
    assert len(step.calls) == 12  # with a checkpoint, the other inputs finish and are kept (paid once)
    step.failing.clear()
    assert [no_id(o) for o in wrapped.batch(INPUTS)] == [no_id(o) for o in rich_chain(Flaky()).batch(INPUTS)]
    assert step.calls[12:] == ["question 11"]


def test_callbacks_fire_for_the_inputs_that_run(tmp_path: Path) -> None:
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | ParrotFakeChatModel() | StrOutputParser()
    work = tmp_path / "ck"
    AAFlowRunnable(chain, checkpoint=work).batch(INPUTS[:8])
    recorder = Recorder()
    # a new checkpoint for 12 inputs would be refused: resume by calling with the same 8, then run 4 more
    out = AAFlowRunnable(chain).batch(INPUTS[8:], config={"callbacks": [recorder],
                                                          "configurable": {"aaflow_checkpoint": str(tmp_path / "b")}})
    assert out == chain.batch(INPUTS[8:])
    assert sum(1 for e in recorder.events() if e[0].startswith("chat_start")) == 4
    recorder = Recorder()
    again = AAFlowRunnable(chain, checkpoint=work).batch(INPUTS[:8], config={"callbacks": [recorder]})
    assert again == chain.batch(INPUTS[:8]) and recorder.events() == []  # all resumed: nothing ran


def test_other_chain_or_inputs_refused_and_left_unchanged(tmp_path: Path) -> None:
    work = tmp_path / "ck"
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | ParrotFakeChatModel()
    AAFlowRunnable(chain, checkpoint=work).batch(INPUTS)
    before = snapshot(work)
    other = ChatPromptTemplate.from_messages([("human", "Q: {q}")]) | ParrotFakeChatModel()
    with pytest.raises(CheckpointError, match=r"chain differs: .*template.*'\{q\}' != 'Q: \{q\}'"):
        AAFlowRunnable(other, checkpoint=work).batch(INPUTS)
    changed = INPUTS[:5] + [{"q": "another"}] + INPUTS[6:]
    with pytest.raises(CheckpointError, match="input 5 differs"):
        AAFlowRunnable(chain, checkpoint=work).batch(changed)
    with pytest.raises(CheckpointError, match="made for 12 inputs, this call has 11"):
        AAFlowRunnable(chain, checkpoint=work).batch(INPUTS[:11])
    assert snapshot(work) == before


@pytest.mark.parametrize("damage", ["truncate", "delete", "garbage-line", "header"])
def test_damaged_checkpoint_is_a_clear_error_and_left_alone(tmp_path: Path, damage: str) -> None:
    work = tmp_path / "ck"
    chain = RunnableLambda(lambda x: {"echo": x["q"]})
    AAFlowRunnable(chain, checkpoint=work, batch_size=3).batch(INPUTS)
    part = work / "part-000000.parquet"
    if damage == "truncate":
        part.write_bytes(part.read_bytes()[:-20])
    elif damage == "delete":
        part.unlink()
    elif damage == "garbage-line":
        lines = (work / JOURNAL_FILE).read_text().split("\n")
        (work / JOURNAL_FILE).write_text("\n".join([lines[0], "{not json", *lines[1:]]))
    else:
        header = json.loads((work / JOURNAL_FILE).read_text().split("\n")[0])
        (work / JOURNAL_FILE).write_text(json.dumps({**header, "format": "aaflow-journal/1"}) + "\n")
    before = snapshot(work)
    expected = {"truncate": "changed or was truncated", "delete": "is missing", "garbage-line": "line 2 is not JSON",
                "header": "differs in format"}[damage]
    with pytest.raises(CheckpointError, match=expected):
        AAFlowRunnable(chain, checkpoint=work).batch(INPUTS)
    assert snapshot(work) == before


def test_torn_journal_line_is_a_crash_not_damage(tmp_path: Path) -> None:
    work = tmp_path / "ck"
    calls: list[str] = []
    chain = RunnableLambda(lambda x: calls.append(x["q"]) or x["q"].upper())
    AAFlowRunnable(chain, checkpoint=work, batch_size=3).batch(INPUTS)
    with open(work / JOURNAL_FILE, "a") as f:
        f.write('{"index": 99, "ro')  # a kill in the middle of appending a line
    (work / "part-000099.parquet").write_bytes(b"half")  # and a part no line names
    assert AAFlowRunnable(chain, checkpoint=work).batch(INPUTS) == [x["q"].upper() for x in INPUTS]
    assert len(calls) == 12 and not (work / "part-000099.parquet").exists()


def test_a_folder_with_other_files_is_not_taken_over(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not a checkpoint and not empty"):
        AAFlowRunnable(RunnableLambda(lambda x: x), checkpoint=tmp_path).batch(INPUTS)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_output_that_json_cannot_carry_names_the_input(tmp_path: Path) -> None:
    chain = RunnableLambda(lambda x: (x["q"], 1))  # a tuple comes back a list
    with pytest.raises(CheckpointError, match=r"input \d+: its output \(tuple\) does not survive"):
        AAFlowRunnable(chain, checkpoint=tmp_path / "ck").batch(INPUTS)


async def test_abatch_resumes_too(tmp_path: Path) -> None:
    calls: list[str] = []
    chain = RunnableLambda(lambda x: calls.append(x["q"]) or len(x["q"]))
    wrapped = AAFlowRunnable(chain, checkpoint=tmp_path / "ck")
    assert await wrapped.abatch(INPUTS) == [len(x["q"]) for x in INPUTS]
    assert await wrapped.abatch(INPUTS) == [len(x["q"]) for x in INPUTS] and len(calls) == 12


def test_progress_counts_resumed_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chain = RunnableLambda(lambda x: x["q"])
    AAFlowRunnable(chain, checkpoint=tmp_path / "ck").batch(INPUTS)
    AAFlowRunnable(chain, checkpoint=tmp_path / "ck", progress=True).batch(INPUTS)
    err = capsys.readouterr().err
    assert "12/12" in err and "resumed=12" in err


def test_batch_as_completed_yields_resumed_outputs_first_then_runs_the_rest(tmp_path: Path) -> None:
    step = Flaky({"question 2", "question 9"})
    chain = RunnableLambda(step) | RunnableLambda(lambda x: x["q"].upper())
    work = tmp_path / "ck"
    first = dict(AAFlowRunnable(chain, checkpoint=work, batch_size=4).batch_as_completed(INPUTS,
                                                                                        return_exceptions=True))
    assert sorted(first) == list(range(12)) and isinstance(first[2], ValueError)
    step.failing.clear()
    second = list(AAFlowRunnable(chain, checkpoint=work).batch_as_completed(INPUTS))
    assert [i for i, _ in second[:10]] == [i for i in range(12) if i not in (2, 9)]  # resumed, in order
    assert sorted(i for i, _ in second[10:]) == [2, 9] and step.calls[12:] in (["question 2", "question 9"],
                                                                             ["question 9", "question 2"])
    assert dict(second) == {i: x["q"].upper() for i, x in enumerate(INPUTS)}
