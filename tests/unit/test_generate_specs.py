"""Generate without a model: plan specs, prompt and bucketing rules, CLI guards."""
from __future__ import annotations

import pytest

from aaflow_core.cli.main import EXIT_FAILED, main
from aaflow_core.cli.serve_llm import is_loopback
from aaflow_core.errors import ConfigError
from aaflow_core.models.llm import DEFAULT_TEMPLATE, LENGTH_BUCKET, bucket, render_prompt
from aaflow_core.plan import Workflow, specs
from aaflow_core.plan.workflow import plan_fingerprint


def test_generate_spec_validates_and_plans_the_template():
    with pytest.raises(ConfigError, match="backend"):
        specs.generate(backend="ollama")
    with pytest.raises(ConfigError, match=r"\{question\}"):
        specs.generate(template="{context} only")
    with pytest.raises(ConfigError, match="template"):
        specs.generate(template="{context} {question} {other}")
    with pytest.raises(ConfigError, match="max_in_flight"):
        specs.generate(max_in_flight=0)
    a = plan_fingerprint(Workflow().add(specs.generate()).compile())
    b = plan_fingerprint(Workflow().add(specs.generate(template="Q: {question}\n{context}")).compile())
    assert a != b and specs.generate().args["template"] == DEFAULT_TEMPLATE


def test_prompt_numbers_passages_and_says_when_there_are_none():
    assert "[1] a\n\n[2] b" in render_prompt(DEFAULT_TEMPLATE, "q?", ["a", "b"])
    assert "(no context found)" in render_prompt(DEFAULT_TEMPLATE, "q?", [])


def test_bucket_depends_on_the_prompt_length_alone():
    assert bucket(1) == bucket(LENGTH_BUCKET) == LENGTH_BUCKET
    assert bucket(LENGTH_BUCKET + 1) == 2 * LENGTH_BUCKET
    assert bucket(0) == LENGTH_BUCKET


def test_serve_llm_refuses_non_loopback_without_allow_remote(capsys):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    assert main(["serve-llm", "--host", "0.0.0.0"]) == EXIT_FAILED
    assert "--allow-remote" in capsys.readouterr().err


def test_ask_rejects_an_empty_questions_file(tmp_path, capsys):
    empty = tmp_path / "q.txt"
    empty.write_text("\n  \n")
    assert main(["ask", "--questions", str(empty), "--index", str(tmp_path)]) == EXIT_FAILED
    assert "no questions" in capsys.readouterr().err
