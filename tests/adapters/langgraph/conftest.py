"""Shared pieces: counted fake embeddings, stock and aaflow stores side by side, a result comparer."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langgraph.store.base import SearchItem
from langgraph.store.memory import InMemoryStore

from aaflow_adapters.langgraph import AAFlowStore
from benchmarks.memory_agents import Counting

DIMS = 32


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
