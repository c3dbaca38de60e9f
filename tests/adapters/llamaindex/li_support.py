"""Shared pieces for the LlamaIndex adapter tests: the bundled model, stable ids, node comparison."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llama_index.core import Document  # noqa: E402
from llama_index.core.schema import BaseNode  # noqa: E402

TOL = 1e-5


@lru_cache(maxsize=1)
def hf_model() -> Any:
    """The bundled all-MiniLM-L6-v2 as a LlamaIndex HuggingFaceEmbedding, loaded once per session."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from aaflow_core.models.embedding import bundled_model_path

    return HuggingFaceEmbedding(model_name=str(bundled_model_path()))


def stable_id(i: int, doc: BaseNode) -> str:
    """Deterministic node ids (stock's default is a random UUID per node)."""
    return f"{doc.node_id}#{i}"


def corpus_docs(folder: Path, chars: int = 5000) -> list[Document]:
    """The first `chars` characters of each pydoc page, plus two short documents, with metadata."""
    docs = [Document(text=p.read_text()[:chars], doc_id=p.stem, metadata={"file_name": p.name})
            for p in sorted(folder.glob("*.txt"))]
    docs.append(Document(text="A short note about JSON decoding.", doc_id="note", metadata={"file_name": "note"}))
    docs.append(Document(text="Shell-like lexing splits a string into tokens.", doc_id="lex"))
    return docs


def assert_same_nodes(stock: Sequence[BaseNode], ours: Sequence[BaseNode], *, exact: bool = False,
                      ids: bool = True) -> None:
    """Same ids, texts, metadata, relationships, hashes, offsets; embeddings equal or within TOL."""
    assert len(ours) == len(stock)
    for s, o in zip(stock, ours):
        if ids:
            assert o.node_id == s.node_id
            assert o.relationships == s.relationships
        assert type(o) is type(s)
        assert o.get_content() == s.get_content()
        assert o.metadata == s.metadata
        assert o.hash == s.hash
        assert (getattr(o, "start_char_idx", None), getattr(o, "end_char_idx", None)) == (
            getattr(s, "start_char_idx", None), getattr(s, "end_char_idx", None))
        assert (o.embedding is None) == (s.embedding is None)
    if stock and stock[0].embedding is not None:
        a, b = matrix(stock), matrix(ours)
        if exact:
            assert np.array_equal(a, b)
        else:
            assert np.abs(a - b).max() <= TOL


def matrix(nodes: Sequence[BaseNode]) -> np.ndarray:
    return np.asarray([n.embedding for n in nodes], dtype=np.float64)
