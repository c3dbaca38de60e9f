"""Checks on what users hand the LangChain adapter, with errors that name the item.

Each check raises where stock LangChain raises (an error of the same built-in type, see
`aaflow_adapters.errors`) and lets through what stock lets through: duck-typed documents
with `page_content` and `metadata`, NaN or infinite vectors.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from langchain_core.runnables import Runnable
from langchain_core.runnables.base import coerce_to_runnable

from aaflow_adapters.errors import (
    DocumentFieldError, EmbeddingOutputError, NotADocumentError, UnsupportedRunnableError, a_type,
)


def as_runnable(obj: Any, where: str = "runnable") -> Runnable[Any, Any]:
    """A Runnable, or what LCEL's `|` makes of a callable or a dict; names the first part that is neither."""
    if isinstance(obj, Runnable):
        return obj
    if isinstance(obj, dict):
        for key, value in obj.items():
            as_runnable(value, f"{where}[{key!r}]")
        return coerce_to_runnable(obj)
    if callable(obj):
        return coerce_to_runnable(obj)
    raise UnsupportedRunnableError(where, f"is {a_type(obj)}; AAFlowRunnable wraps a Runnable, or a callable or "
                                          "dict that LCEL turns into one")


def doc_label(i: int, doc: Any, name: str = "docs") -> str:
    """`docs[3] (source='json.txt')`: the position, and the source or id when the document has one."""
    metadata = getattr(doc, "metadata", None)
    source = metadata.get("source") if isinstance(metadata, Mapping) else None
    ident = getattr(doc, "id", None)
    extra = f" (source={source!r})" if source is not None else f" (id={ident!r})" if ident else ""
    return f"{name}[{i}]{extra}"


def check_document(i: int, doc: Any, name: str = "docs") -> None:
    """What every splitter reads: a str `page_content` and a mapping `metadata`."""
    if not (hasattr(doc, "page_content") and hasattr(doc, "metadata")):
        raise NotADocumentError(f"{name}[{i}]", f"is {a_type(doc)}, not a Document (it has no page_content/metadata)")
    if not isinstance(doc.page_content, str):
        raise DocumentFieldError(doc_label(i, doc, name), f"page_content is {a_type(doc.page_content)}, expected a str")
    if not isinstance(doc.metadata, Mapping):
        raise DocumentFieldError(doc_label(i, doc, name), f"metadata is {a_type(doc.metadata)}, expected a dict")


def as_matrix(rows: Any, n: int, model: str, name: Callable[[int], str]) -> np.ndarray:
    """An embedding model's answer for `n` texts as a C-contiguous float32 (n, dim) matrix.

    EmbeddingOutputError names the texts (`name(i)`) when the answer is not one vector of
    numbers per text, all of one size; stock FAISS raises ValueError for the same answers.
    """
    if rows is None or isinstance(rows, (str, bytes)) or not hasattr(rows, "__len__"):
        raise EmbeddingOutputError(_span(n, name), f"{model} returned {a_type(rows)}, expected {n} vectors")
    if len(rows) != n:
        raise EmbeddingOutputError(_span(n, name), f"{model} returned {len(rows)} vectors for {n} texts")
    try:
        matrix = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        i, why = _bad_row(rows)
        raise EmbeddingOutputError(name(i), f"{model} returned a vector that {why}") from exc
    if matrix.ndim != 2 or (n and matrix.shape[1] == 0):
        raise EmbeddingOutputError(_span(n, name), f"{model} returned an array of shape {matrix.shape}, "
                                                   f"expected ({n}, dim)")
    return np.ascontiguousarray(matrix)


def _bad_row(rows: Any) -> tuple[int, str]:
    size = _size(rows[0])
    for i, row in enumerate(rows):
        if _size(row) != size:
            return i, f"has {_size(row)} values where the first has {size}"
        try:
            np.asarray(row, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            return i, f"is not all numbers ({exc})"
    return 0, "cannot be read as float32 numbers"


def _size(row: Any) -> int | None:
    return len(row) if hasattr(row, "__len__") and not isinstance(row, (str, bytes)) else None


def _span(n: int, name: Callable[[int], str]) -> str:
    return name(0) if n == 1 else f"{name(0)} .. {name(n - 1)}" if n else "no texts"
