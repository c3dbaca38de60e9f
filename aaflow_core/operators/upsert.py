"""Upsert: the streaming stage that writes each embedded batch into a store and commits it."""
from __future__ import annotations

import pyarrow as pa

from aaflow_core.errors import ConfigError
from aaflow_core.operators.base import Operator
from aaflow_core.stores.protocol import StoreWriter


class UpsertOperator(Operator):
    """Adds every batch to its store and commits it there, while earlier stages keep embedding.

    The store is a run-time argument (bound by name, `bind(..., overrides=...)`): the plan
    names the index, the job decides how it is written (checkpointed, sharded). Each batch is
    passed through unchanged.
    """

    kind = "upsert"
    reads = ("chunk_id", "text", "embedding")

    def __init__(self, name: str | None = None, *, index_dir: str, store: StoreWriter | None = None) -> None:
        super().__init__(name)
        self.index_dir = index_dir
        self.store = store

    def open(self) -> None:
        if self.store is None:
            raise ConfigError("store", None, f"upsert {self.name!r} into {self.index_dir} needs a store writer "
                                             "bound at run time (the ingest job passes one)")

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        self.check_input(batch)
        assert self.store is not None, "open() first"
        if batch.num_rows:
            self.store.add(batch)
            self.store.commit()
        return batch
