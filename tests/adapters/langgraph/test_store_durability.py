"""Reopening a directory gives the same store; a killed writer leaves its last committed batch."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from langgraph.store.base import ListNamespacesOp, PutOp, SearchOp
from langgraph.store.memory import InMemoryStore

from aaflow_adapters.langgraph import AAFlowStore
from aaflow_core.errors import ConfigError, IndexDirError
from tests.adapters.langgraph.conftest import DIMS, assert_same
from tests.adapters.langgraph.test_store_equivalence import WORDS, random_ops

PROBES = [SearchOp((), None, 1000, 0, None), ListNamespacesOp(None, None, 1000, 0),
          *[SearchOp((), None, 50, 0, w) for w in WORDS], SearchOp(("users",), {"color": "red"}, 5, 1, "apple car")]


def index(fake: Any) -> dict[str, Any]:
    return {"dims": DIMS, "embed": fake, "fields": ["text", "notes[*]"]}


def state(store: Any) -> list[Any]:
    return store.batch(PROBES)


@pytest.mark.parametrize("compact_every", [1000, 7])
def test_reopen_gives_the_same_store(tmp_path: Path, fake: Any, compact_every: int) -> None:
    """Replayed from the log alone (1000), or from snapshots plus a log tail (7)."""
    stock = InMemoryStore(index=index(fake))
    with AAFlowStore(tmp_path / "m", index=index(fake), compact_every=compact_every) as ours:
        for batch in random_ops(seed=3, steps=60):
            stock.batch(batch)
            ours.batch(batch)
        before = state(ours)
    generation = json.loads((tmp_path / "m" / "manifest.json").read_text())["generation"]
    assert generation == 1 if compact_every == 1000 else generation > 1  # close() compacts; so does every 7th commit
    calls = fake.calls
    with AAFlowStore(tmp_path / "m", index=index(fake), compact_every=compact_every) as reopened:
        assert fake.calls == calls  # nothing is embedded again on open
        after = state(reopened)
        assert reopened.embedding_calls == 1  # the probes' queries: one coalesced call
        for s, b, a in zip(state(stock), before, after):
            assert_same(b, a, tol=0.0)  # the same bits come back
            assert_same(s, a)


def test_emptied_namespace_keeps_its_place_across_compaction(tmp_path: Path, fake: Any) -> None:
    stock = InMemoryStore(index=index(fake))
    ops = [[PutOp(("a",), "1", {"text": "first"})], [PutOp(("b",), "1", {"text": "second"})], [PutOp(("a",), "1", None)]]
    with AAFlowStore(tmp_path / "m", index=index(fake)) as ours:
        for batch in ops:
            stock.batch(batch)
            ours.batch(batch)
    again = [PutOp(("a",), "2", {"text": "third"})]
    stock.batch(again)
    with AAFlowStore(tmp_path / "m", index=index(fake)) as reopened:
        reopened.batch(again)
        assert_same(stock.search(()), reopened.search(()))
        assert [h.namespace for h in reopened.search(())] == [("a",), ("b",)]


WRITER = textwrap.dedent("""
    import sys
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from aaflow_adapters.langgraph import AAFlowStore
    store = AAFlowStore(sys.argv[1], index={"dims": 32, "embed": DeterministicFakeEmbedding(size=32), "fields": ["text"]})
    for i in range(100000):
        store.put(("log",), f"k{i:06d}", {"text": f"memory number {i}", "i": i})
        print(i, flush=True)
""")


def test_killed_writer_leaves_the_last_committed_state(tmp_path: Path, fake: Any) -> None:
    """SIGKILL mid-stream: every acknowledged put is there, the rest is a clean prefix, nothing torn."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[3]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "m")], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None
    acked = -1
    for line in proc.stdout:
        acked = int(line)
        if acked >= 40:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with AAFlowStore(tmp_path / "m", index=index(fake)) as reopened:
        items = reopened.search(("log",), limit=100000)
        assert len(items) > acked
        assert [h.value["i"] for h in items] == list(range(len(items)))
        hits = reopened.search(("log",), query="memory number 7", limit=1)
        assert hits[0].key == "k000007" and hits[0].score == pytest.approx(1.0)


def test_one_owner_per_directory(tmp_path: Path, fake: Any) -> None:
    with AAFlowStore(tmp_path / "m", index=index(fake)):
        with pytest.raises(IndexDirError, match="already open"):
            AAFlowStore(tmp_path / "m", index=index(fake))
    with pytest.raises(ConfigError, match="dimension"):
        AAFlowStore(index={"embed": fake})  # type: ignore[typeddict-item]
    with pytest.raises(ConfigError, match="holds a store of 32 dims"):
        AAFlowStore(tmp_path / "m", index={"dims": 8, "embed": fake})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not a store")
    with pytest.raises(IndexDirError, match="not an aaflow commit log"):
        AAFlowStore(tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "not a store"
