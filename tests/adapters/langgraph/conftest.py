"""Shared pieces: embeddings that count their calls, stock and aaflow stores side by side, a comparer."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langgraph.store.base import SearchItem
from langgraph.store.memory import InMemoryStore

from aaflow_adapters.langgraph import AAFlowStore

DIMS = 32


class Counting(Embeddings):
    """Delegates to `inner`; counts calls and texts (thread-safe), the quantity coalescing changes."""

    def __init__(self, inner: Embeddings) -> None:
        self.inner, self.calls, self.texts = inner, 0, 0
        self._lock = threading.Lock()

    def _count(self, n: int) -> None:
        with self._lock:
            self.calls += 1
            self.texts += n

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self._count(len(texts))
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        self._count(1)
        return self.inner.embed_query(text)


@pytest.fixture
def fake() -> Counting:
    """Deterministic vectors from a hash of the text: same text, same vector, for both stores."""
    return Counting(DeterministicFakeEmbedding(size=DIMS))


@pytest.fixture
def pair(fake: Counting, tmp_path: Any) -> Iterator[tuple[InMemoryStore, AAFlowStore]]:
    """Stock InMemoryStore and an on-disk AAFlowStore with the same index config."""
    index = {"dims": DIMS, "embed": fake, "fields": ["text", "notes[*]"]}
    ours = AAFlowStore(tmp_path / "memory", index=index)
    yield InMemoryStore(index=index), ours
    ours.close()


def key_of(hit: Any) -> tuple[Any, ...]:
    return (hit.namespace, hit.key, hit.value)


def assert_same(stock: Any, ours: Any, tol: float = 1e-5) -> None:
    """Same items in the same order; scores (None or within `tol`) equal; other results equal."""
    if isinstance(stock, list) and stock and isinstance(stock[0], SearchItem):
        assert [key_of(h) for h in ours] == [key_of(h) for h in stock]
        for s, o in zip(stock, ours):
            assert (s.score is None) == (o.score is None), (s, o)
            if s.score is not None:
                assert abs(s.score - o.score) <= tol, (s, o)
    elif stock is not None and hasattr(stock, "value"):
        assert ours is not None and key_of(ours) == key_of(stock)
    else:
        assert ours == stock
