"""Run across two simulated hosts where LOCAL is a different directory on each: paths not shared.

argv: CORPUS LOCAL WORK. LOCAL holds, on host a only, a copy of the corpus (LOCAL/corpus) and a
one-rank index (LOCAL/index); host b sees an empty directory there. Three `aaflow` commands,
each expected to fail naming the path and host b: ingest into LOCAL/new (staging not shared),
ingest LOCAL/corpus into WORK/from-local (corpus not shared), query LOCAL/index (index not
shared). Each rank writes WORK/ns-<rank>.json with the exit codes and what rank 0 printed.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

from aaflow_core.cli.main import main
from aaflow_core.distributed import Comm


def run(corpus: str, local: Path, work: Path) -> None:
    comm = Comm.world()
    common = ["--threads", "1", "--no-progress"]
    calls = {
        "index": ["ingest", corpus, "--index", str(local / "new"), *common],
        "corpus": ["ingest", str(local / "corpus"), "--index", str(work / "from-local"), *common],
        "query": ["query", "How do I split a shell command line into tokens?", "--index", str(local / "index")],
    }
    report = {}
    for name, argv in calls.items():
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(argv)
        report[name] = {"rc": rc, "stderr": err.getvalue()}
    (work / f"ns-{comm.rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    run(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
