"""The ask job: retrieve top-k passages per question (the query job), then one Generate stage."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from aaflow_core.models.llm import DEFAULT_TEMPLATE
from aaflow_core.pipelines.query import Hit, query
from aaflow_core.plan import Resources, Workflow, specs
from aaflow_core.runtime import Executor, bind


@dataclass(frozen=True)
class AskConfig:
    """How answers are produced; validated when the plan is built (specs.generate)."""

    k: int = 4
    llm: str = "local"
    model: str | None = None
    base_url: str | None = None
    max_new_tokens: int = 64
    max_in_flight: int = 8
    max_context_chars: int = 800
    template: str = DEFAULT_TEMPLATE
    threads: int = 1


@dataclass(frozen=True)
class Answer:
    question: str
    answer: str
    hits: list[Hit]


def questions_batch(questions: Sequence[str], hits: Sequence[Sequence[Hit]], max_chars: int) -> pa.RecordBatch:
    """qid, question and the passages (each cut to `max_chars`) in rank order: what Generate reads."""
    return pa.RecordBatch.from_pydict({
        "qid": pa.array(range(len(questions)), pa.int64()),
        "question": pa.array(list(questions), pa.string()),
        "contexts": pa.array([[h.text[:max_chars] for h in hs] for hs in hits], pa.list_(pa.string())),
    })


def ask(index_dir: str | os.PathLike[str], questions: Sequence[str], config: AskConfig = AskConfig()) -> list[Answer]:
    """An answer per question, in question order."""
    wf = Workflow(Resources(threads=config.threads))
    wf.add(specs.generate(backend=config.llm, model=config.model, base_url=config.base_url, template=config.template,
                          max_new_tokens=config.max_new_tokens, max_in_flight=config.max_in_flight))
    plan = wf.compile()  # validates before the (slower) retrieval runs
    hits = query(index_dir, questions, k=config.k, threads=config.threads)
    answers: list[str] = [""] * len(questions)
    with Executor(bind(plan), backend="serial") as ex:
        for out in ex.run([questions_batch(questions, hits, config.max_context_chars)]):
            for qid, text in zip(out.column("qid").to_pylist(), out.column("answer").to_pylist()):
                answers[qid] = text
    return [Answer(q, a, list(h)) for q, a, h in zip(questions, answers, hits)]
