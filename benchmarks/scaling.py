"""Strong scaling of `aaflow ingest` over MPI ranks: same corpus, N = 1, 2, ... ranks.

Each N runs `LAUNCHER -n N python -m aaflow_core.cli.main ingest CORPUS` with
threads-per-rank = cores // ranks-per-node, so the cores are used once whatever N is.
Reports wall time (process start + model load + ingest), pipeline time (the manifest's
`total_s`: the slowest rank's streaming run), parallel efficiency T1 / (N * TN) for both,
bytes sent between ranks per chunk, the hosts and ranks per host each N ran on, and whether
every N produced the same chunks, embeddings within 1e-5 and the same top-k (for --questions,
searched in this process) as the first N. Not a test: numbers are written to JSON, never asserted.

    python benchmarks/scaling.py CORPUS --ranks 1 2 --out benchmarks/results/scaling.json
    # one 16-core machine:
    python benchmarks/scaling.py CORPUS --ranks 1 2 4 8 16 --cores 16
    # two nodes with a hostfile (hydra), 8 ranks per node at most:
    python benchmarks/scaling.py CORPUS --ranks 1 2 4 8 16 --cores 16 --ranks-per-node 8 \\
        --launcher "mpiexec -f hosts -ppn 8" --work /shared/scratch
    # cluster, 4 nodes x 32 cores, 8 ranks per node:
    python benchmarks/scaling.py CORPUS --ranks 8 16 32 --cores 32 --ranks-per-node 8 \\
        --launcher "srun --ntasks={n} --ntasks-per-node=8 --cpus-per-task=4" --work /shared/scratch
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aaflow_core.distributed import Comm  # noqa: E402
from aaflow_core.pipelines import query  # noqa: E402
from aaflow_core.pipelines.ingest import default_threads  # noqa: E402
from aaflow_core.stores.faiss_store import IndexReader  # noqa: E402


QUESTIONS = ("How do I split a shell command line into tokens?", "How do I parse command line arguments?",
             "How can I match a regular expression against a string?")


def launcher_cmd(template: str, n: int) -> list[str]:
    """`{n}` in the template is the rank count; a bare mpiexec gets `-n N` appended."""
    if "{n}" in template:
        return shlex.split(template.format(n=n))
    return [*shlex.split(template), "-n", str(n)]


def run_one(args: argparse.Namespace, n: int, index: Path) -> dict:
    per_node = min(n, args.ranks_per_node or n)
    threads = max(1, args.cores // per_node)
    cmd = [*launcher_cmd(args.launcher, n), sys.executable, "-m", "aaflow_core.cli.main", "ingest", str(args.corpus),
           "--index", str(index), "--threads", str(threads), "--no-progress", "--overwrite"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if done.returncode not in (0, 3):
        raise SystemExit(f"ranks={n} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    m = json.loads((index / "manifest.json").read_text())
    chunks = m["counts"]["chunks"]
    moved = m.get("bytes_between_ranks", 0)
    return {
        "ranks": n, "threads_per_rank": threads, "command": shlex.join(cmd),
        "wall_s": round(wall, 3), "pipeline_s": m["total_s"], "model_load_s": m["model_load_s"],
        "phases_s": m["phases_s"], "chunks": chunks, "documents": m["counts"]["documents"],
        "per_rank_chunks": [r["chunks"] for r in m.get("per_rank", [{"chunks": chunks}])],
        "bytes_between_ranks": moved, "bytes_per_chunk": round(moved / chunks, 2) if chunks else None,
        "hosts": m.get("hosts", []),
        "chunks_sha256": m["chunks_sha256"], "output_sha256": m["output_sha256"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus", type=Path)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--cores", type=int, default=default_threads(), help="cores per node")
    p.add_argument("--ranks-per-node", type=int, default=None, help="default: all ranks on one node")
    p.add_argument("--launcher", default=str(Path(sys.executable).with_name("mpiexec")),
                   help="mpiexec path, or a template with {n} such as 'srun -n {n}'")
    p.add_argument("--work", type=Path, default=None, help="where indexes are written (shared FS on a cluster)")
    p.add_argument("--questions", nargs="*", default=list(QUESTIONS), help="top-k compared across N")
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scaling.json")
    args = p.parse_args()
    files = sorted(f for f in args.corpus.rglob("*") if f.is_file())
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        runs, vectors, tops = [], {}, {}
        for n in args.ranks:
            index = Path(tmp) / f"index-{n}"
            runs.append(run_one(args, n, index))
            vectors[n] = IndexReader(index).vectors()
            tops[n] = [[h.chunk_id for h in hits] for hits in query(index, args.questions, k=args.k, comm=Comm())]
            print(json.dumps({k: runs[-1][k] for k in ("ranks", "threads_per_rank", "wall_s", "pipeline_s",
                                                        "chunks", "bytes_per_chunk")}), flush=True)
    base = runs[0]
    for r in runs:
        scale = r["ranks"] / base["ranks"]
        r["efficiency_wall"] = round(base["wall_s"] / (scale * r["wall_s"]), 3)
        r["efficiency_pipeline"] = round(base["pipeline_s"] / (scale * r["pipeline_s"]), 3)
        r["same_chunks_as_base"] = r["chunks_sha256"] == base["chunks_sha256"]
        r["max_abs_embedding_diff_vs_base"] = float(np.abs(vectors[r["ranks"]] - vectors[base["ranks"]]).max())
        r["same_topk_as_base"] = tops[r["ranks"]] == tops[base["ranks"]]
    report = {
        "corpus": {"path": str(args.corpus), "files": len(files), "bytes": sum(f.stat().st_size for f in files)},
        "questions": args.questions, "k": args.k, "cores_per_node": args.cores, "machine": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
        "runs": runs,
    }
    for r in runs:
        print(f"ranks={r['ranks']:<3} wall {r['wall_s']:8.2f}s  pipeline {r['pipeline_s']:8.2f}s  efficiency "
              f"{r['efficiency_wall']:.2f} wall / {r['efficiency_pipeline']:.2f} pipeline  same chunks "
              f"{r['same_chunks_as_base']}  same top-{args.k} {r['same_topk_as_base']}  hosts {len(r['hosts']) or 1}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
