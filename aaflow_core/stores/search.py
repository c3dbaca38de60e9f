"""Exact, deterministic top-k over one FAISS index: score descending, then row ascending.

FAISS alone breaks ties in no documented order, so the search widens until no tie can
straddle the k-th place and sorts by that rule. Every reader of an index (distributed
search and its top-k merge) uses this one function.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def exact_topk(index: Any, queries: np.ndarray, k: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(scores, global ids), each (n, min(k, ntotal)), ordered by score desc then id asc."""
    n_rows = int(index.ntotal)
    take = min(k, n_rows)
    if take == 0 or len(queries) == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    fetch = take
    while True:
        scores, ids = index.search(queries, fetch)
        if fetch == n_rows or bool(np.all(scores[:, fetch - 1] < scores[:, take - 1])):
            break
        fetch = min(2 * fetch, n_rows)  # a tie may reach past the k-th place: look further
    order = np.lexsort((ids, -scores), axis=-1)[:, :take]
    return np.take_along_axis(scores, order, -1), np.take_along_axis(ids, order, -1) + offset
