"""Shared fixtures: a small real corpus (pydoc pages) and the bundled model loaded once."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SMALL_MODULES = ("json", "fnmatch", "shlex")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Name the machine once at the top of the log: results can depend on its CPU features."""
    from aaflow_core.models.cpu import cpu_line

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(cpu_line())


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three real pydoc pages (~60 KB): enough for ~100 chunks, small enough for the test budget."""
    import importlib
    import pydoc

    folder = tmp_path_factory.mktemp("corpus") / "stdlib"
    folder.mkdir()
    for name in SMALL_MODULES:
        text = pydoc.render_doc(importlib.import_module(name), renderer=pydoc.plaintext)
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def embedder():
    """The bundled all-MiniLM-L6-v2, loaded once per test session (the same object aaflow uses)."""
    from aaflow_core.operators.embed import shared_embedder

    return shared_embedder(None, 2)
