"""Opt-in accuracy report of an ingest run's embedding mode against fp32 on the same chunks.

It costs a second (fp32, torch) pass over a sample of the stored chunks, so it only runs when
asked (`aaflow ingest --accuracy-report`). The sample is input-only (evenly spaced rows, at most
`max_rows`); the queries are the user's, or the first 200 characters of evenly spaced sampled
chunks (real corpus text). Recall@10 compares the mode's search with fp32's within the sample.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from aaflow_core.dataplane.views import embedding_matrix
from aaflow_core.models.accuracy import accuracy_report
from aaflow_core.models.embedding import Embedder
from aaflow_core.operators.embed import length_order, shared_embedder

MAX_ROWS = 2000
QUERY_CHARS = 200
DEFAULT_QUERIES = 50


def evenly_spaced(n: int, count: int) -> np.ndarray:
    """`count` row numbers spread over `n` rows (all rows when n <= count), increasing."""
    if n <= count:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, count).round().astype(np.int64))


def ordered_encode(embedder: Embedder, texts: list[str], batch_size: int) -> np.ndarray:
    """Encode as the Embed operator does (longest first, `batch_size` per call), rows in input order."""
    order = length_order(pa.array(texts, pa.string()))
    out = np.empty((len(texts), embedder.dim), dtype=np.float32)
    out[order] = embedder.encode([texts[i] for i in order], batch_size)
    return out


def mode_accuracy(batches: Sequence[pa.RecordBatch], embedder: Embedder, *, model: str | None, threads: int,
                  batch_size: int, queries: Sequence[str] = (), max_rows: int = MAX_ROWS) -> dict[str, Any]:
    """Accuracy figures of `embedder`'s stored vectors (in `batches`) against torch-fp32."""
    table = pa.Table.from_batches(batches)
    rows = evenly_spaced(table.num_rows, max_rows)
    sample = table.take(pa.array(rows)).combine_chunks()  # one copy of the sample, so it is one matrix
    texts = sample.column("text").to_pylist()
    stored = embedding_matrix(sample.column("embedding"))
    query_texts = list(queries) or [texts[i][:QUERY_CHARS] for i in evenly_spaced(len(texts), DEFAULT_QUERIES)]
    reference = shared_embedder(model, threads, "fp32", "torch")
    report = accuracy_report(ordered_encode(reference, texts, batch_size), stored,
                             reference.encode(query_texts, batch_size), embedder.encode(query_texts, batch_size))
    return {"mode": embedder.mode.effective.label, "reference": "torch-fp32", "sampled_rows": int(len(rows)),
            "query_source": "user" if queries else f"first {QUERY_CHARS} chars of sampled chunks", **report}
