"""Run under `mpiexec -n 2`: the `aaflow ingest` command twice, then once with rank 1 failing.

argv: CORPUS WORKDIR. Runs `ingest CORPUS --index WORKDIR/a`, the same into WORKDIR/b (a
rerun), then `--overwrite` into WORKDIR/a while rank 1's chunker raises. Each rank writes
the exit codes it got to WORKDIR/rcs-<rank>.json. The model is loaded once per rank.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from aaflow_core.cli.main import main
from aaflow_core.distributed import Comm
from aaflow_core.operators.chunk import ChunkOperator


def fail_on_this_rank(self, batch):
    raise RuntimeError("injected failure")


def run(corpus: str, work: Path) -> None:
    comm = Comm.world()
    common = ["--threads", "1", "--no-progress"]
    rcs = [main(["ingest", corpus, "--index", str(work / "a"), *common]),
           main(["ingest", corpus, "--index", str(work / "b"), *common])]
    if comm.rank == 1:
        ChunkOperator.process = fail_on_this_rank
    rcs.append(main(["ingest", corpus, "--index", str(work / "a"), "--overwrite", *common]))
    (work / f"rcs-{comm.rank}.json").write_text(json.dumps(rcs))


if __name__ == "__main__":
    run(sys.argv[1], Path(sys.argv[2]))
