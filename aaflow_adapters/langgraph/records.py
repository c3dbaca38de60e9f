"""Store writes as Arrow rows: one row per put or delete, its vectors a fixed_size_list<float32> column.

The same schema serves the commit log (each commit is one batch of rows) and the snapshot (every
live item as a put row, in the store's order). Values are stored as JSON text, the contract
`BaseStore.put` states ("JSON-serializable values"); a value that is not JSON fails before anything
is written, naming its namespace and key.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from aaflow_adapters.errors import DocumentFieldError
from aaflow_core.dataplane import embedding_column, embedding_matrix, embedding_type

Namespace = tuple[str, ...]


def row_schema(dims: int) -> pa.Schema:
    return pa.schema([
        ("namespace", pa.list_(pa.string())),
        ("key", pa.string()),
        ("value", pa.large_string()),  # JSON; null: the item is deleted
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        ("paths", pa.list_(pa.string())),
        ("vectors", pa.list_(embedding_type(dims))),
    ])


@dataclass
class Row:
    """One write: `value` None deletes; `vectors` (len(paths), dims) unit rows, one per indexed path."""

    namespace: Namespace
    key: str
    value: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    paths: list[str]
    vectors: np.ndarray


def to_json(namespace: Namespace, key: str, value: dict[str, Any]) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise DocumentFieldError(f"item {namespace}/{key!r}", f"value is not JSON-serializable: {exc}") from exc


def encode(rows: Sequence[Row], dims: int, values: Sequence[str | None]) -> pa.RecordBatch:
    """An Arrow batch of `rows` (their JSON `values` given); the vectors' buffer is shared, not copied."""
    counts = np.array([len(r.paths) for r in rows], np.int32)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    matrix = (np.ascontiguousarray(np.concatenate([r.vectors for r in rows]), dtype=np.float32)
              if counts.sum() else np.zeros((0, dims), np.float32))
    vectors = pa.ListArray.from_arrays(pa.array(offsets), embedding_column(matrix))
    schema = row_schema(dims)
    return pa.RecordBatch.from_arrays([
        pa.array([list(r.namespace) for r in rows], schema.field("namespace").type),
        pa.array([r.key for r in rows], pa.string()),
        pa.array(values, pa.large_string()),
        pa.array([r.created_at for r in rows], schema.field("created_at").type),
        pa.array([r.updated_at for r in rows], schema.field("updated_at").type),
        pa.array([r.paths for r in rows], schema.field("paths").type),
        vectors.cast(schema.field("vectors").type),
    ], schema=schema)


def decode(batch: pa.RecordBatch) -> Iterator[Row]:
    """The rows of a batch, values parsed; each row's vectors a view into the batch's buffer."""
    col = batch.column("vectors")
    offsets = col.offsets.to_numpy()
    flat = embedding_matrix(col.flatten()) if len(col.flatten()) else None
    base = offsets[0]
    names, keys, values = batch.column("namespace").to_pylist(), batch.column("key").to_pylist(), batch.column("value")
    created, updated = batch.column("created_at").to_pylist(), batch.column("updated_at").to_pylist()
    paths = batch.column("paths").to_pylist()
    dims = col.type.value_type.list_size
    for i in range(batch.num_rows):
        text = values[i].as_py()
        lo, hi = offsets[i] - base, offsets[i + 1] - base
        vectors = flat[lo:hi] if flat is not None else np.zeros((0, dims), np.float32)
        yield Row(tuple(names[i]), keys[i], None if text is None else json.loads(text),
                  created[i], updated[i], paths[i], vectors)
