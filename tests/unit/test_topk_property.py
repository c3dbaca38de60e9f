"""Property: merging per-shard exact top-k (any split, any shard order) equals one exact search.

Small integer-valued vectors make many exact ties, the case where FAISS alone has no order.
"""
from __future__ import annotations

import faiss
import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from aaflow_core.distributed.topk import exact_topk, hits_of, merge_topk


@st.composite
def problems(draw):
    dim = draw(st.integers(1, 4))
    rows = draw(st.integers(1, 40))
    n_queries = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    vectors = rng.integers(-2, 3, (rows, dim)).astype(np.float32)
    queries = rng.integers(-2, 3, (n_queries, dim)).astype(np.float32)
    cuts = sorted(draw(st.lists(st.integers(0, rows), max_size=4)))
    k = draw(st.integers(1, rows + 3))
    order = draw(st.permutations(range(len(cuts) + 1)))
    return vectors, queries, [0, *cuts, rows], k, order


def flat(vectors: np.ndarray) -> faiss.IndexFlatIP:
    index = faiss.IndexFlatIP(vectors.shape[1])
    if len(vectors):
        index.add(vectors)
    return index


@settings(max_examples=150, deadline=None)
@given(problems())
def test_merged_shards_equal_a_single_exact_search(problem):
    vectors, queries, bounds, k, order = problem
    scores, ids = exact_topk(flat(vectors), queries, k)
    tables = []
    for lo, hi in zip(bounds, bounds[1:]):
        s, i = exact_topk(flat(vectors[lo:hi]), queries, k, offset=lo)
        tables.append(hits_of(s, i))
    merged = merge_topk(pa.concat_tables([tables[j] for j in order]), k)
    want = hits_of(scores, ids)
    assert merged.column("row").to_pylist() == want.column("row").to_pylist()
    assert merged.column("qid").to_pylist() == want.column("qid").to_pylist()
    assert merged.column("score").to_pylist() == want.column("score").to_pylist()
    assert merged.column("rank").to_pylist() == [r for _ in range(len(queries)) for r in range(ids.shape[1])]


@settings(max_examples=150, deadline=None)
@given(problems())
def test_exact_search_is_score_descending_then_row_ascending(problem):
    vectors, queries, _, k, _ = problem
    scores, ids = exact_topk(flat(vectors), queries, k)
    exact = queries @ vectors.T  # small integers: exact in float32
    for q in range(len(queries)):
        want = np.lexsort((np.arange(len(vectors)), -exact[q]))[: min(k, len(vectors))]
        assert ids[q].tolist() == want.tolist()
        assert scores[q].tolist() == exact[q][want].tolist()
