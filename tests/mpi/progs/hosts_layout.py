"""Run across two simulated hosts, two ranks on host a and one on host b: where the ranks run.

argv: WORK. Each rank writes WORK/layout-<rank>.json: the placement's ranks per host, the
ranks on its node (`local_size`, from MPI's shared-memory split), its default thread count,
and the error a collective check raises when rank 2 fails.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from aaflow_core.distributed import Comm
from aaflow_core.distributed.hosts import placement, threads_per_rank
from aaflow_core.errors import RankError

if __name__ == "__main__":
    comm = Comm.world()
    where = placement(comm)
    try:
        comm.agree(ValueError("injected on rank 2") if comm.rank == 2 else None)
        failure = None
    except RankError as exc:
        failure = {"rank": exc.rank, "host": exc.host, "message": str(exc)}
    report = {"hosts": where.ranks_per_host(), "describe": where.describe(), "local_size": comm.local_size(),
              "threads": threads_per_rank(comm),
              "failure": failure}
    Path(sys.argv[1], f"layout-{comm.rank}.json").write_text(json.dumps(report))
