"""Deterministic top-k: exact per-shard search and a merge that equals one search over all rows.

The order is score descending, then global row id ascending. FAISS alone breaks ties in no
documented order, so each shard widens its search until no tie can straddle the k-th place,
sorts by that rule, and the merge applies the same rule: the merged lists equal a single
search of the concatenated vectors, whatever the number of shards or ranks.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from aaflow_core.stores.search import exact_topk

__all__ = ["HIT_SCHEMA", "exact_topk", "hits_of", "merge_topk"]

HIT_SCHEMA = pa.schema([("qid", pa.int64()), ("score", pa.float32()), ("row", pa.int64())])


def hits_of(scores: np.ndarray, ids: np.ndarray, qids: np.ndarray | None = None) -> pa.Table:
    """Flatten (n, k) results into rows (qid, score, row) of HIT_SCHEMA."""
    n, k = ids.shape
    q = np.arange(n, dtype=np.int64) if qids is None else np.asarray(qids, dtype=np.int64)
    return pa.table([pa.array(np.repeat(q, k)), pa.array(scores.ravel().astype(np.float32)),
                     pa.array(ids.ravel().astype(np.int64))], schema=HIT_SCHEMA)


def merge_topk(hits: pa.Table, k: int) -> pa.Table:
    """Keep the best k rows per qid from any number of shards' hits, by (score desc, row asc).

    Extra columns (chunk text, source...) travel with their row; the result is sorted by qid,
    then by that order, and gets a 0-based `rank` column.
    """
    qid = hits.column("qid").to_numpy()
    score = hits.column("score").to_numpy()
    row = hits.column("row").to_numpy()
    order = np.lexsort((row, -score.astype(np.float64), qid))
    sorted_q = qid[order]
    starts = np.searchsorted(sorted_q, sorted_q, side="left")
    place = np.arange(len(order)) - starts
    keep = order[place < k]
    out = hits.take(pa.array(keep))
    return out.append_column("rank", pa.array(place[place < k].astype(np.int32)))
