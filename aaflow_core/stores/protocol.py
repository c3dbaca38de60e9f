"""The store seam: what the upsert stage writes through and what readers search.

A new vector store (LanceDB, say) implements these two protocols and the index-directory
protocol in `layout`; the pipelines and the upsert operator need nothing else.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa


class StoreWriter(Protocol):
    """Batches of rows with an `embedding` column in, durable commits, one atomic publish."""

    def add(self, batch: pa.RecordBatch) -> None:
        """Store `batch` after everything added before it (row order is the input's)."""

    def commit(self) -> object:
        """Make everything added so far durable (a kill after this loses none of it); returns what a
        checkpoint records to find the commit again on resume."""

    def publish(self, manifest: dict[str, Any]) -> Path:
        """Finish writing, record `manifest`, and swap the result into place atomically."""

    def discard(self) -> None:
        """Drop what was written (nothing was published)."""


class StoreReader(Protocol):
    """A published index, searched exactly: ties go to the lower row."""

    def __len__(self) -> int:
        """How many rows (and vectors) the index holds."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, row ids), each (n_queries, min(k, rows)), best first."""
