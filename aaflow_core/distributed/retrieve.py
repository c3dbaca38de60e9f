"""Distributed retrieval: query embeddings go to every rank, each searches its shards, top-k merge.

With a size-1 context the same code searches every shard in this process, so a 1-rank and an
N-rank index, searched by 1 or N ranks, give the same hits (see `topk`).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from aaflow_core.dataplane.views import embedding_matrix
from aaflow_core.distributed.hosts import require_same_file
from aaflow_core.distributed.spmd import Engine
from aaflow_core.distributed.topk import HIT_SCHEMA, exact_topk, hits_of, merge_topk
from aaflow_core.stores.faiss_store import read_vectors
from aaflow_core.stores.layout import MANIFEST_FILE, Shard, index_shards

ROW_COLUMNS = ("chunk_id", "source", "text")
RESULT_SCHEMA = HIT_SCHEMA
for _name in ROW_COLUMNS:
    RESULT_SCHEMA = RESULT_SCHEMA.append(pa.field(_name, pa.string()))


def search_shards(shards: Sequence[Shard], queries: pa.Table, k: int) -> pa.Table:
    """Each shard's exact top-k for every query, joined with its stored rows (RESULT_SCHEMA)."""
    vectors = embedding_matrix(queries.column("embedding"))
    qids = queries.column("qid").to_numpy()
    parts = [RESULT_SCHEMA.empty_table()]
    for shard in shards:
        index = read_vectors(shard.path)
        scores, ids = exact_topk(index, vectors, k, offset=shard.offset)
        hits = hits_of(scores, ids, qids)
        rows = pq.read_table(shard.rows_file, columns=list(ROW_COLUMNS), memory_map=True)
        local = pa.array(ids.ravel() - shard.offset)
        for name in ROW_COLUMNS:
            hits = hits.append_column(name, rows.column(name).take(local).cast(pa.string()))
        parts.append(hits)
    return pa.concat_tables(parts)


def distributed_search(comm: Engine, index_dir: str | os.PathLike[str], queries: pa.Table | None, k: int) -> pa.Table:
    """Top-k hits per query on every rank: root's `queries` (qid, embedding) are broadcast.

    Rank r searches its contiguous share of the index's shards; the hit tables are gathered
    to the root as Arrow IPC, merged, and the k best per query broadcast back. Every rank must
    read the manifest rank 0 reads (a shared file system): else SharedPathError on every rank.
    """
    queries = comm.bcast_table(queries)
    require_same_file(comm, Path(index_dir) / MANIFEST_FILE, "the index manifest")
    local = RESULT_SCHEMA.empty_table()
    with comm.collective():
        shards = index_shards(index_dir)
        local = search_shards([shards[i] for i in comm.shard(len(shards))], queries, k)
    gathered = comm.gather_table(local)
    merged = merge_topk(gathered, k) if gathered is not None else None
    return comm.bcast_table(merged)
