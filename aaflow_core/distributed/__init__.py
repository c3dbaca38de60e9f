"""MPI scale-out: the rank context, Arrow tables between ranks as IPC bytes, top-k merge.

Public API for pipelines and adapters (all of it works without mpiexec, as a size-1 job):
`Comm.world()`, `Comm.for_ranks(ranks)`, `Comm.rank/size/is_root`, `Comm.shard(n)`, `Comm.allgather_table`,
`Comm.gather_table`, `Comm.bcast_table`, `Comm.agree(error)`, `merge_topk`, `exact_topk`,
`distributed_search`.
"""
from aaflow_core.distributed.comm import Comm, CommStats, under_launcher
from aaflow_core.distributed.retrieve import distributed_search, search_shards
from aaflow_core.distributed.topk import HIT_SCHEMA, exact_topk, hits_of, merge_topk

__all__ = [
    "HIT_SCHEMA", "Comm", "CommStats", "distributed_search", "exact_topk", "hits_of", "merge_topk",
    "search_shards", "under_launcher",
]
