"""Upsert: append chunks with embeddings to an on-disk FAISS index (zero-copy into FAISS)."""
from __future__ import annotations

import pyarrow as pa

from aaflow_core.operators.base import Operator
from aaflow_core.stores.faiss_store import IndexWriter


class UpsertOperator(Operator):
    """Passes its batch through unchanged, so the caller can hash exactly what was stored."""

    kind = "upsert"
    reads = ("chunk_id", "text", "embedding")

    def __init__(self, name: str | None = None, *, index_dir: str, overwrite: bool = False) -> None:
        super().__init__(name)
        self.index_dir = index_dir
        self.overwrite = overwrite
        self.writer: IndexWriter | None = None

    def open(self) -> None:
        self.writer = IndexWriter(self.index_dir, overwrite=self.overwrite)

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        self.check_input(batch)
        assert self.writer is not None, "open() first"
        if batch.num_rows:
            self.writer.add(batch)
        return batch

    def finish(self) -> None:
        assert self.writer is not None
        self.writer.finish()
