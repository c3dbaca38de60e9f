"""DualRetriever: knowledge and memory hits merged by the documented score, same over either store."""
from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from langchain_community.vectorstores import FAISS
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.tools import create_retriever_tool
from langgraph.store.memory import InMemoryStore

from aaflow_adapters.langgraph import AAFlowStore, DualRetriever, MergeWeights

KNOWLEDGE = ["Lisbon is the capital of Portugal", "The cello is a bowed string instrument",
             "Peanut allergies can be severe", "Porto is known for port wine"]
MEMORIES = {"m1": "my flight to Lisbon leaves on Friday", "m2": "my daughter plays the cello",
            "m3": "I am allergic to peanuts"}


def retriever(store: Any, embed: Any, **kw: Any) -> DualRetriever:
    for key, text in MEMORIES.items():
        store.put(("memories", "u1"), key, {"text": text})
    created = store.get(("memories", "u1"), "m1").updated_at
    weights = MergeWeights(semantic=1.0, knowledge=0.0, memory=0.02, recency=0.1, half_life_s=3600.0)
    return DualRetriever(knowledge=FAISS.from_texts(KNOWLEDGE, embed, normalize_L2=True, relevance_score_fn=lambda d: 1.0 - d / 4.0), store=store, namespace=("memories", "u1"),
                         k=4, weights=weights, clock=lambda: created + timedelta(hours=1), **kw)


def test_merged_ranking_is_the_documented_score_over_either_store(tmp_path: Path) -> None:
    embed = DeterministicFakeEmbedding(size=32)
    index = {"dims": 32, "embed": embed, "fields": ["text"]}
    with AAFlowStore(tmp_path / "m", index=index) as ours:
        got = retriever(ours, embed).invoke(MEMORIES["m1"])
        expected = retriever(InMemoryStore(index=index), embed).invoke(MEMORIES["m1"])
        assert [(d.page_content, d.metadata["origin"]) for d in got] == [
            (d.page_content, d.metadata["origin"]) for d in expected]
        assert all(abs(a.metadata["score"] - b.metadata["score"]) <= 1e-5 for a, b in zip(got, expected))
        scores = [d.metadata["score"] for d in got]
        assert scores == sorted(scores, reverse=True) and {d.metadata["origin"] for d in got} == {"knowledge", "memory"}
        for d in got:  # the formula, term by term (recency: one half-life old, so 0.1 * 0.5)
            bonus = 0.02 + 0.05 if d.metadata["origin"] == "memory" else 0.0
            assert d.metadata["score"] == pytest.approx(d.metadata["similarity"] + bonus, abs=1e-3)
        assert [d.page_content for d in asyncio.run(retriever(ours, embed).ainvoke(MEMORIES["m1"]))] == [
            d.page_content for d in got]


def test_usable_as_an_agent_tool(tmp_path: Path) -> None:
    embed = DeterministicFakeEmbedding(size=32)
    with AAFlowStore(tmp_path / "m", index={"dims": 32, "embed": embed, "fields": ["text"]}) as ours:
        tool = create_retriever_tool(retriever(ours, embed), "recall", "Search what is known and remembered.")
        out = tool.invoke({"query": "my daughter plays the cello"})
        assert "my daughter plays the cello" in out
