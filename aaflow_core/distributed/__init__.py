"""Distributed execution (SPMD): the engine protocol, the MPI engine, Arrow tables between ranks, top-k merge.

Public API for pipelines and adapters (all of it works without mpiexec, as a size-1 job):
`Comm.world()`, `Comm.for_ranks(ranks)`, `Comm.rank/size/is_root`, `Comm.shard(n)`, `Comm.allgather_table`,
`Comm.gather_table`, `Comm.bcast_table`, `Comm.agree(error)`, `Comm.collective()` (agree-on-error block),
`Comm.run_sharded(n, work, default)`, the `Engine` protocol they implement, `merge_topk`, `exact_topk`,
`distributed_search`; the multi-host checks `placement`, `ranks_per_host`, `require_inputs`,
`require_shared_dir`, `require_same_file`, `threads_per_rank`.
"""
from aaflow_core.distributed.comm import Comm, CommStats, under_launcher
from aaflow_core.distributed.hosts import (
    Placement, placement, ranks_per_host, require_inputs, require_same_file, require_shared_dir, threads_per_rank,
)
from aaflow_core.distributed.retrieve import distributed_search, search_shards
from aaflow_core.distributed.spmd import Driver, Engine
from aaflow_core.distributed.topk import HIT_SCHEMA, exact_topk, hits_of, merge_topk

__all__ = [
    "HIT_SCHEMA", "Comm", "CommStats", "Driver", "Engine", "Placement", "distributed_search", "exact_topk",
    "hits_of", "merge_topk", "placement", "ranks_per_host", "require_inputs", "require_same_file",
    "require_shared_dir", "search_shards", "threads_per_rank", "under_launcher",
]
