"""Run under `mpiexec -n 2`: `aaflow ingest --overwrite` where rank 1 is killed (SIGKILL) mid-run.

argv: CORPUS INDEX. The index must already exist; the test checks it survives untouched.
"""
from __future__ import annotations

import os
import signal
import sys

import aaflow_core.pipelines.ingest_ranks as ingest_ranks
from aaflow_core.cli.main import main
from aaflow_core.distributed import Comm


def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    if Comm.world().rank == 1:
        ingest_ranks.run_local = killed
    sys.exit(main(["ingest", sys.argv[1], "--index", sys.argv[2], "--overwrite", "--threads", "1", "--no-progress"]))
