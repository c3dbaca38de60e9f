"""Case 4: native ingest over 1..N MPI ranks, reusing benchmarks/scaling.py's launcher, alternating order."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import spread


def scaling(corpus: Path, ranks: list[int], repeats: int, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Every rank count `repeats` times (order reversed every other round); wall and pipeline spread per N."""
    try:
        from benchmarks.scaling import run_one
    except ImportError as exc:  # the MPI scale-out lands separately (issue 6)
        return {"skipped": f"benchmarks/scaling.py not available: {exc}"}
    from aaflow_core.pipelines.ingest import default_threads

    args = argparse.Namespace(corpus=corpus, cores=default_threads(), ranks_per_node=None,
                              launcher=str(Path(sys.executable).with_name("mpiexec")))
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in ranks}
    for rep in range(repeats):
        for n in (ranks if rep % 2 == 0 else ranks[::-1]):
            try:
                runs[n].append(run_one(args, n, work / f"index-{n}"))
            except SystemExit as exc:  # run_one exits with the launcher's stderr on failure
                runs[n].append({"error": str(exc)[-1500:]})
            r = runs[n][-1]
            log(f"  ranks={n:<3} rep {rep}: " + (f"{r['wall_s']:.3f}s (pipeline {r['pipeline_s']:.3f}s)"
                                                 if "wall_s" in r else r["error"][-200:]))
    out = {}
    for n, rs in runs.items():
        ok = [r for r in rs if "wall_s" in r]
        out[str(n)] = {"wall_s": spread([r["wall_s"] for r in ok]), "pipeline_s": spread([r["pipeline_s"] for r in ok]),
                       "threads_per_rank": ok[0]["threads_per_rank"] if ok else None,
                       "output_sha256": sorted({r["output_sha256"] for r in ok}), "runs": rs}
    base = out[str(ranks[0])]
    for n in ranks:
        for metric in ("wall_s", "pipeline_s"):
            b, m = base[metric].get("median"), out[str(n)][metric].get("median")
            out[str(n)][f"speedup_{metric}"] = b / m if b and m else None
    hashes = {h for v in out.values() for h in v["output_sha256"]}
    return {"ranks": ranks, "cores": default_threads(), "per_ranks": out, "distinct_output_hashes_across_ranks": len(hashes)}
