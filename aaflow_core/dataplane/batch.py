"""A record batch with its sequence key; it refuses pickling so no path can pickle batches."""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class SeqBatch:
    """`seq` is the batch's position in input order; reorder buffers sort on it."""

    seq: int
    batch: pa.RecordBatch

    def __reduce__(self):  # noqa: D401 - guard, not API
        raise TypeError("SeqBatch must not be pickled: move batches as Arrow IPC buffers (aaflow_core.dataplane.ipc)")
