"""Every Arrow <-> NumPy crossing of embeddings lives here, and none of them copies.

Both directions raise instead of silently copying, so a change that would put a Python float
list or a hidden copy on the embed -> upsert path fails loudly.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa


def embedding_column(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """Wrap a C-contiguous float32 (n, dim) matrix as a fixed_size_list column without a copy."""
    if matrix.dtype != np.float32 or matrix.ndim != 2:
        raise TypeError(f"embeddings must be a 2-D float32 matrix, got {matrix.dtype} with shape {matrix.shape}")
    if not matrix.flags.c_contiguous:
        raise ValueError("embeddings must be C-contiguous to be shared with Arrow without a copy")
    n, dim = matrix.shape
    values = pa.Array.from_buffers(pa.float32(), n * dim, [None, pa.py_buffer(matrix)])
    return pa.FixedSizeListArray.from_arrays(values, dim)


def embedding_matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A read-only (n, dim) float32 view of a fixed_size_list column's values buffer (no copy).

    A chunked column with more than one chunk cannot be viewed as one matrix; combine it
    explicitly first (that copy is then visible at the call site).
    """
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks != 1:
            raise ValueError(f"embedding column has {column.num_chunks} chunks; combine_chunks() it first")
        column = column.chunk(0)
    if not pa.types.is_fixed_size_list(column.type) or column.type.value_type != pa.float32():
        raise TypeError(f"expected fixed_size_list<float32>, got {column.type}")
    if column.null_count:
        raise ValueError("embedding column has null rows")
    dim = column.type.list_size
    values = column.values  # honours the array offset
    flat = values.to_numpy(zero_copy_only=True)
    start = column.offset * dim
    return flat[start : start + len(column) * dim].reshape(len(column), dim)


def buffer_address(obj: np.ndarray | pa.Array) -> int:
    """Address of the first embedding value, for tests that prove a buffer was shared."""
    if isinstance(obj, np.ndarray):
        return int(obj.__array_interface__["data"][0])
    return int(embedding_matrix(obj).__array_interface__["data"][0])
