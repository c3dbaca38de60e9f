"""The index writer spills vectors in fixed-size segments; readers see one index, row for row."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from aaflow_core.dataplane.views import embedding_column
from aaflow_core.distributed import Comm
from aaflow_core.distributed.retrieve import distributed_search
from aaflow_core.stores.faiss_store import INDEX_FILE, IndexReader, IndexWriter, segment_path

DIM = 8


def rows(start: int, n: int, rng: np.random.Generator) -> pa.RecordBatch:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    ids = [f"c{start + i}" for i in range(n)]
    return pa.RecordBatch.from_arrays(
        [pa.array(ids), pa.array(["s"] * n), pa.array([f"text {i}" for i in ids]), embedding_column(vectors)],
        names=["chunk_id", "source", "text", "embedding"])


def write(path, batches, segment_rows):
    writer = IndexWriter(path, segment_bytes=segment_rows * DIM * 4)
    for batch in batches:
        writer.add(batch)
    writer.finish()
    writer.publish({"counts": {"chunks": writer.count}})
    return writer


@pytest.mark.parametrize("sizes", [[4, 9, 1, 9], [5, 5, 5], [23]])
def test_segments_read_back_as_one_index(tmp_path, sizes):
    rng = np.random.default_rng(len(sizes))
    batches, start = [], 0
    for n in sizes:
        batches.append(rows(start, n, rng))
        start += n
    expected = np.vstack([b.column("embedding").flatten().to_numpy().reshape(-1, DIM) for b in batches])
    segmented = write(tmp_path / "seg", batches, segment_rows=5)
    whole = write(tmp_path / "one", batches, segment_rows=1 << 16)

    assert segmented.segments == -(-start // 5) and whole.segments == 1
    assert segment_path(tmp_path / "seg", 1).exists() and not segment_path(tmp_path / "one", 1).exists()
    assert (tmp_path / "one" / INDEX_FILE).exists()
    reader = IndexReader(tmp_path / "seg")
    assert np.array_equal(reader.vectors(), expected)
    assert reader.rows.column("chunk_id").to_pylist() == [f"c{i}" for i in range(start)]

    queries = rng.standard_normal((6, DIM)).astype(np.float32)
    got, want = reader.search(queries, 7), IndexReader(tmp_path / "one").search(queries, 7)
    assert np.array_equal(got[1], want[1]) and np.array_equal(got[0], want[0])
    table = pa.table({"qid": pa.array(range(6), pa.int64()), "embedding": embedding_column(queries)})
    hits = distributed_search(Comm(), tmp_path / "seg", table, 7)
    assert hits.column("chunk_id").to_pylist() == [f"c{i}" for i in want[1].ravel()]


def test_bad_segment_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="segment_bytes"):
        IndexWriter(tmp_path / "x", segment_bytes=0)
