"""A mutable, in-memory FAISS index: vectors added and removed by id, searched within an id subset.

The published index (`faiss_store`) is written once; agent memory changes every turn. Here the
vectors live in an `IndexIDMap2` over `IndexFlatIP` (exact inner product), are fed views of
Arrow `fixed_size_list<float32>` columns, and a search sees only the ids its caller allows
(one namespace, the rows a filter kept), so one index serves every partition of the memory.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from aaflow_core.dataplane.views import embedding_matrix


def _faiss() -> Any:
    import faiss

    return faiss


class MutableIndex:
    """Exact inner-product search over vectors that come and go by int64 id."""

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self._index = _faiss().IndexIDMap2(_faiss().IndexFlatIP(dim))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: np.ndarray, column: pa.Array | pa.ChunkedArray) -> None:
        """Add the rows of a fixed_size_list<float32> column under `ids` (FAISS reads a view of its buffer)."""
        vectors = embedding_matrix(column)
        if vectors.shape[1] != self.dim or len(vectors) != len(ids):
            raise ValueError(f"{len(ids)} ids for vectors of shape {vectors.shape}; index dim is {self.dim}")
        if len(ids):
            self._index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self._index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of `ids`, in that order (a copy out of FAISS)."""
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        return self._index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))

    def search(self, query: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The `k` best (scores, ids) among `allowed`, best first; equal scores in no set order."""
        allowed = np.ascontiguousarray(allowed, dtype=np.int64)
        k = min(k, len(allowed))
        if k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        params = _faiss().SearchParameters(sel=_faiss().IDSelectorBatch(allowed))
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
        scores, ids = self._index.search(q, k, params=params)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]
