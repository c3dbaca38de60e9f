"""Plans are plain data: printable, hashable, validated, rewritten by pure functions."""
from __future__ import annotations

import pytest

from aaflow_core.errors import ConfigError
from aaflow_core.plan import PlanError, Resources, Workflow, specs
from aaflow_core.plan.workflow import plan_fingerprint


def ingest_workflow(chunk_size: int = 1000, threads: int = 2) -> Workflow:
    wf = Workflow(Resources(threads=threads))
    for spec in (specs.load(), specs.chunk(chunk_size=chunk_size), specs.embed(), specs.upsert(index_dir="/x")):
        wf.add(spec)
    return wf


def test_fingerprint_is_stable_and_sensitive_to_parameters_and_resources():
    a, b = ingest_workflow().compile(), ingest_workflow().compile()
    assert plan_fingerprint(a) == plan_fingerprint(b)
    assert plan_fingerprint(a) != plan_fingerprint(ingest_workflow(chunk_size=999).compile())
    assert plan_fingerprint(a) != plan_fingerprint(ingest_workflow(threads=1).compile())


def test_compile_is_pure_and_the_plan_prints():
    wf = ingest_workflow()
    assert wf.compile() == wf.compile()
    text = str(wf.compile())
    assert "chunk: chunk" in text and "embed: embed batch=256" in text


def test_workers_are_capped_by_declared_threads():
    wf = Workflow(Resources(threads=2)).map(lambda b: b, workers=8)
    assert wf.compile().ops[0].workers == 2


def test_bad_graphs_and_values_fail_before_running():
    with pytest.raises(PlanError, match="empty"):
        Workflow().compile()
    wf = Workflow().add(specs.load())
    with pytest.raises(PlanError, match="duplicate"):
        wf.add(specs.load())
    with pytest.raises(PlanError, match="unknown operator"):
        wf.add(specs.chunk(), after="nope")
    with pytest.raises(PlanError, match="linear"):
        wf.add(specs.chunk()).add(specs.embed(), after="load").compile()
    with pytest.raises(ConfigError):
        specs.chunk(chunk_size=10, chunk_overlap=10)
    with pytest.raises(ConfigError):
        Resources(threads=0)
