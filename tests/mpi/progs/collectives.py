"""Run under `mpiexec -n 2`: exercises aaflow_core.distributed.Comm and reports what it saw.

Every pickle mpi4py makes is counted (through mpi4py's own pickle hook), so the report proves
that tables crossed ranks as Arrow IPC bytes only. Rank 0 writes the report to argv[1].
"""
from __future__ import annotations

import json
import pickle
import sys

import numpy as np
import pyarrow as pa
from mpi4py import MPI

from aaflow_core.dataplane.views import embedding_column, embedding_matrix
from aaflow_core.distributed import Comm, exact_topk, hits_of, merge_topk
from aaflow_core.errors import RankError

PICKLES = {"dumps": 0, "loads": 0}


def counting_dumps(obj, *args):
    PICKLES["dumps"] += 1
    return pickle.dumps(obj, *args)


def counting_loads(data, *args):
    PICKLES["loads"] += 1
    return pickle.loads(data, *args)


MPI.pickle.__init__(counting_dumps, counting_loads)


def vectors(seed: int, n: int, dim: int = 16) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    x[n // 2] = x[1]  # exact ties, one in each rank's half
    x[n - 1] = x[1]
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main(out: str) -> None:
    import faiss

    comm = Comm.world()
    report: dict = {"size": comm.size, "shards": {n: [list(comm.shard(n, r)[::1]) for r in range(comm.size)]
                                                  for n in (0, 1, 5, 8)},
                    "weighted": {str(w): [list(comm.shard_weighted(w, r)) for r in range(comm.size)]
                                 for w in ([5, 45, 15], [1] * 7, [100, 1, 1, 1], [1, 1, 1, 100])}}
    # A table with an embedding column goes round every collective.
    local = vectors(comm.rank, 3 + comm.rank)
    table = pa.table({"rank": pa.array([comm.rank] * len(local), pa.int32()), "embedding": embedding_column(local)})
    everyone = comm.allgather_table(table)
    report["allgather_ranks"] = everyone.column("rank").to_pylist()
    expect = np.concatenate([vectors(r, 3 + r) for r in range(comm.size)])
    report["allgather_equal"] = bool(np.array_equal(embedding_matrix(everyone.column("embedding").combine_chunks()), expect))
    gathered = comm.gather_table(table)
    report["gather_on_others_is_none"] = comm.allgather_table(pa.table({"none": [gathered is None]}))["none"].to_pylist()
    report["bcast_equal"] = comm.allgather_table(pa.table({"eq": [comm.bcast_table(table if comm.is_root else None)
                                                                   .equals(pa.table({"rank": pa.array([0] * 3, pa.int32()),
                                                                                     "embedding": embedding_column(vectors(0, 3))}))]}))["eq"].to_pylist()
    # Distributed top-k: each rank holds a shard of one matrix; the merge equals one index.
    allvec = vectors(7, 41)
    part = comm.shard(len(allvec))
    index = faiss.IndexFlatIP(allvec.shape[1])
    index.add(allvec[part.start:part.stop])
    queries = np.ascontiguousarray(allvec[[1, 2, 30]])
    scores, ids = exact_topk(index, queries, 4, offset=part.start)
    merged = comm.gather_table(hits_of(scores, ids))
    ok = {}
    if comm.is_root:
        single = faiss.IndexFlatIP(allvec.shape[1])
        single.add(allvec)
        s1, i1 = exact_topk(single, queries, 4)
        m = merge_topk(merged, 4)
        ok = {"merged_rows": m.column("row").to_pylist(), "single_rows": i1.ravel().tolist(),
              "scores_equal": bool(np.array_equal(m.column("score").to_numpy(), s1.ravel()))}
    report["topk"] = ok
    try:
        comm.agree(ValueError("injected on rank 1") if comm.rank == 1 else None)
        report["agree"] = "no error"
    except RankError as exc:
        report["agree"] = f"{exc.rank}: {exc}"
    report["pickles_in_aaflow"] = dict(PICKLES)
    MPI.COMM_WORLD.bcast({"control": "a lower-case call pickles"}, root=0)
    report["pickles_after_control"] = dict(PICKLES)
    if comm.is_root:
        with open(out, "w") as fh:
            json.dump(report, fh)


if __name__ == "__main__":
    main(sys.argv[1])
