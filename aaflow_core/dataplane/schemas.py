"""Canonical Arrow schemas: documents, chunks, and the fixed-size embedding column."""
from __future__ import annotations

import pyarrow as pa

PATHS = pa.schema([("path", pa.string()), ("source", pa.string())])

DOCUMENTS = pa.schema(
    [("doc_id", pa.string()), ("source", pa.string()), ("text", pa.large_string()), ("metadata", pa.string())]
)

CHUNKS = pa.schema(
    [
        ("doc_id", pa.string()),
        ("chunk_id", pa.string()),
        ("seq", pa.int32()),
        ("source", pa.string()),
        ("text", pa.string()),
        ("metadata", pa.string()),
    ]
)


def embedding_type(dim: int) -> pa.DataType:
    """The embedding column type: one contiguous float32 buffer, `dim` values per row."""
    return pa.list_(pa.float32(), dim)


def chunks_with_embedding(dim: int) -> pa.Schema:
    return CHUNKS.append(pa.field("embedding", embedding_type(dim)))
