"""Retrieve: query rows with embeddings -> top-k hit rows, one batched FAISS search per batch."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from aaflow_core.dataplane.views import embedding_matrix
from aaflow_core.operators.base import Operator
from aaflow_core.stores.faiss_store import IndexReader

HIT_COLUMNS = ("qid", "rank", "score", "chunk_id", "source", "text")


def hits_table(reader: IndexReader, qids: np.ndarray, scores: np.ndarray, ids: np.ndarray) -> pa.RecordBatch:
    """Flatten (n, k) search results into hit rows joined with the stored chunk rows."""
    keep = ids >= 0
    flat_ids = ids[keep]
    rows = reader.rows.take(pa.array(flat_ids))
    k = ids.shape[1]
    return pa.RecordBatch.from_pydict(
        {
            "qid": pa.array(np.repeat(qids, k)[keep.ravel()]),
            "rank": pa.array(np.tile(np.arange(k, dtype=np.int32), len(qids))[keep.ravel()]),
            "score": pa.array(scores[keep].astype(np.float32)),
            "chunk_id": rows.column("chunk_id").combine_chunks(),
            "source": rows.column("source").combine_chunks(),
            "text": rows.column("text").combine_chunks(),
        }
    )


class RetrieveOperator(Operator):
    kind = "retrieve"
    reads = ("qid", "embedding")
    writes = HIT_COLUMNS

    def __init__(self, name: str | None = None, *, index_dir: str, k: int = 5) -> None:
        super().__init__(name)
        self.index_dir = index_dir
        self.k = k
        self.reader: IndexReader | None = None

    def open(self) -> None:
        self.reader = IndexReader(self.index_dir)

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        self.check_input(batch)
        assert self.reader is not None, "open() first"
        scores, ids = self.reader.search(embedding_matrix(batch.column("embedding")), self.k)
        qids = batch.column("qid").to_numpy(zero_copy_only=False)
        return hits_table(self.reader, qids, scores, ids)
