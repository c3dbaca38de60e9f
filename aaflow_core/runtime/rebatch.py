"""Re-cut a stream of batches into batches of exactly `rows` rows (the last may be shorter).

Boundaries depend only on the rows seen, in order, so downstream batch composition (and
with it embedding bits) never depends on timing.
"""
from __future__ import annotations

import pyarrow as pa


class Rebatch:
    def __init__(self, name: str, rows: int) -> None:
        self.name = name
        self.rows = rows
        self._held: list[pa.RecordBatch] = []
        self._count = 0

    def push(self, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        if batch.num_rows == 0:
            return []
        self._held.append(batch)
        self._count += batch.num_rows
        out: list[pa.RecordBatch] = []
        while self._count >= self.rows:
            table = pa.Table.from_batches(self._held)
            out.append(table.slice(0, self.rows).combine_chunks().to_batches()[0])
            rest = table.slice(self.rows)
            self._held = rest.to_batches() if rest.num_rows else []
            self._count = rest.num_rows
        return out

    def drain(self) -> list[pa.RecordBatch]:
        if not self._count:
            return []
        out = pa.Table.from_batches(self._held).combine_chunks().to_batches()
        self._held, self._count = [], 0
        return out
