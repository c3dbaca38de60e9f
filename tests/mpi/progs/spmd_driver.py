"""Run under `mpiexec -n 2`: `Comm.collective()` and `Comm.run_sharded` on real ranks; rank 0 writes argv[1]."""
from __future__ import annotations

import json
import sys

import pyarrow as pa

from aaflow_core.distributed import Comm
from aaflow_core.errors import RankError


def main(out: str) -> None:
    comm = Comm.world()
    report: dict[str, object] = {}
    mine, got = comm.run_sharded(5, lambda part: [i * 10 for i in part], [])
    report["shards"] = [list(r) for r in comm.allgather_table(
        pa.table({"v": [got]})).column("v").to_pylist()]
    try:
        comm.run_sharded(4, lambda part: 1 / 0 if comm.rank == 1 else 0, -1)
        report["sharded_failure"] = "no error"
    except RankError as exc:
        report["sharded_failure"] = f"{exc.rank}: {exc} (cause here: {type(exc.__cause__).__name__})"
    try:
        with comm.collective():
            if comm.is_root:
                raise KeyError("root only")
        report["root_failure"] = "no error"
    except RankError as exc:
        report["root_failure"] = f"{exc.rank}: {exc}"
    with comm.collective():
        pass
    report["after"] = "reached"
    causes = comm.allgather_table(pa.table({"c": [str(report["sharded_failure"])]}))
    report["per_rank_failure"] = causes.column("c").to_pylist()
    if comm.is_root:
        with open(out, "w") as fh:
            json.dump(report, fh)


if __name__ == "__main__":
    main(sys.argv[1])
