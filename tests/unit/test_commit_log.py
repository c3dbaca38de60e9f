"""CommitLog: committed batches survive; torn tails and half-done compactions are cut off on open."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from aaflow_core.dataplane.views import buffer_address, embedding_column
from aaflow_core.errors import IndexDirError
from aaflow_core.stores.commit_log import CommitLog
from aaflow_core.stores.mutable_index import MutableIndex

SCHEMA = pa.schema([("n", pa.int64())])


def batch(*values: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array(values, pa.int64())], schema=SCHEMA)


def replayed(path: Path) -> list[int]:
    log = CommitLog(path, SCHEMA, {})
    try:
        return [v for b in log.replay() for v in b.column("n").to_pylist()]
    finally:
        log.close()


def test_commits_replay_in_order_and_torn_tails_are_cut(tmp_path: Path) -> None:
    log = CommitLog(tmp_path / "c", SCHEMA, {"dims": 4})
    for i in range(3):
        log.append(batch(i, i + 10))
    log.close()
    path = tmp_path / "c" / "log-000000.arrows"
    good = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b"\x10\x00\x00\x00")  # a header cut short by a crash
    assert replayed(tmp_path / "c") == [0, 10, 1, 11, 2, 12]
    assert path.stat().st_size == good
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the last frame's bytes no longer match its digest
    path.write_bytes(bytes(data))
    assert replayed(tmp_path / "c") == [0, 10, 1, 11]


def test_compaction_switches_generations_atomically(tmp_path: Path) -> None:
    log = CommitLog(tmp_path / "c", SCHEMA, {"dims": 4})
    log.append(batch(1))
    log.append(batch(2))
    log.compact([batch(1, 2)])
    log.append(batch(3))
    assert log.generation == 1 and log.meta == {"dims": 4}
    log.close()
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "lock", "log-000001.arrows", "manifest.json", "snapshot-000001.parquet"]
    # a compaction that crashed before its manifest switch left the next generation's files
    (tmp_path / "c" / "snapshot-000002.parquet").write_bytes(b"half written")
    (tmp_path / "c" / "snapshot-000002.parquet.tmp").write_bytes(b"half written")
    assert replayed(tmp_path / "c") == [1, 2, 3]
    assert not (tmp_path / "c" / "snapshot-000002.parquet").exists()


def test_refuses_foreign_or_locked_directories(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "data.csv").write_text("a,b")
    with pytest.raises(IndexDirError, match="not an aaflow commit log"):
        CommitLog(tmp_path / "x", SCHEMA, {})
    log = CommitLog(tmp_path / "c", SCHEMA, {})
    with pytest.raises(IndexDirError, match="already open"):
        CommitLog(tmp_path / "c", SCHEMA, {})
    log.close()
    CommitLog(tmp_path / "c", SCHEMA, {}).close()


def test_mutable_index_adds_removes_and_searches_within_ids() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((6, 8)).astype(np.float32)
    column = embedding_column(vectors)
    assert buffer_address(column) == buffer_address(vectors)  # FAISS is handed the Arrow buffer itself
    index = MutableIndex(8)
    index.add(np.arange(100, 106), column)
    query = vectors[2]
    scores, ids = index.search(query, np.array([101, 102, 104]), 5)
    expected = sorted([101, 102, 104], key=lambda i: -float(vectors[i - 100] @ query))
    assert ids.tolist() == expected and np.allclose(scores, [vectors[i - 100] @ query for i in expected], atol=1e-5)
    index.remove(np.array([102]))
    assert len(index) == 5 and 102 not in index.search(query, np.array([101, 102, 104]), 5)[1].tolist()
    assert np.array_equal(index.vectors(np.array([105, 100])), vectors[[5, 0]])
