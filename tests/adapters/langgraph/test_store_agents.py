"""100 concurrent `create_agent` agents with memory: same hits as InMemoryStore, coalesced embedding calls."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langgraph.store.memory import InMemoryStore

from aaflow_adapters.langgraph import AAFlowStore
from benchmarks.memory_agents import Counting, Hits, memory_agent, run_async, run_sync

USERS, TURNS, MICRO_BATCH = 100, 2, 50


def stock_hits(runner: str, embed: Any) -> Hits:
    hits: Hits = {}
    agent = memory_agent(InMemoryStore(index={"dims": 32, "embed": embed, "fields": ["text"]}), hits)
    asyncio.run(run_async(agent, USERS, TURNS)) if runner == "async" else run_sync(agent, USERS, TURNS)
    return hits


def assert_same_hits(stock: Hits, ours: Hits) -> None:
    assert stock.keys() == ours.keys() and len(ours) == USERS * TURNS
    for q in stock:
        assert [k for k, _ in ours[q]] == [k for k, _ in stock[q]], q
        assert all(abs(a - b) <= 1e-5 for (_, a), (_, b) in zip(stock[q], ours[q]) if a is not None), q


@pytest.mark.parametrize("runner", ["async", "sync"])
def test_many_agents_share_embedding_calls(tmp_path: Path, runner: str) -> None:
    stock_embed, our_embed = Counting(DeterministicFakeEmbedding(size=32)), Counting(DeterministicFakeEmbedding(size=32))
    expected = stock_hits(runner, stock_embed)
    hits: Hits = {}
    with AAFlowStore(tmp_path / "m", index={"dims": 32, "embed": our_embed, "fields": ["text"]},
                     micro_batch=MICRO_BATCH, max_wait_ms=200, max_delay_ms=5000) as store:
        store.put(("warm",), "up", {"text": "first use: lazy imports happen here, not inside a wave"})
        warm_calls, warm_texts = store.embedding_calls, our_embed.texts
        agent = memory_agent(store, hits)
        asyncio.run(run_async(agent, USERS, TURNS)) if runner == "async" else run_sync(agent, USERS, TURNS)
        calls = store.embedding_calls - warm_calls
        sizes = store.embedding_batch_sizes[warm_calls:]
    assert_same_hits(expected, hits)
    operations = 2 * USERS * TURNS  # a search and a put per agent turn, one text each
    assert stock_embed.calls == operations
    assert our_embed.texts - warm_texts == operations and our_embed.calls == calls + warm_calls
    if runner == "async":  # one event loop: a wave of agents reaches the store within the quiet period
        assert calls <= -(-operations // MICRO_BATCH), sizes
    else:  # 100 threads: the OS schedules them with pauses of 200 ms and more, which close some batches early
        assert calls <= operations // 10, sizes
    with AAFlowStore(tmp_path / "m", index={"dims": 32, "embed": our_embed, "fields": ["text"]}) as reopened:
        assert len(reopened.search(("memories", "user-7"), limit=100)) == TURNS
