"""RAG question answering only: stock `chain.batch` (defaults, tuned) vs `AAFlowRunnable`, same chain.

The store is built untimed from a small pydoc corpus; the chat model is the EchoChat endpoint
(fixed latency) in a subprocess on 127.0.0.1. Sides alternate order each repetition; medians and
every run go to JSON. Run: `python -m benchmarks.langchain_rag` (`langchain_bench.py` adds ingestion).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from aaflow_core.pipelines.corpus import write_stdlib_corpus
from benchmarks import langchain_bench as lb

MODES = ("stock_default", "stock_tuned", "aaflow")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.3)
    ap.add_argument("--in-flight", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--corpus-bytes", type=int, default=60_000)
    ap.add_argument("--out", default="benchmarks/results/langchain_rag.json")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    corpus = Path(tempfile.mkdtemp(prefix="aaflow-rag-"))
    write_stdlib_corpus(corpus, args.corpus_bytes)
    server = subprocess.Popen([sys.executable, "-c", lb.SERVER, str(args.latency)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    runs: dict[str, list[dict]] = {}
    try:
        url = server.stdout.readline().strip()  # type: ignore[union-attr]
        sides = {m: lb.rag_side(str(corpus), url, m, args.questions, args.in_flight) for m in MODES}
        for rep in range(args.repeats):
            for mode in MODES if rep % 2 == 0 else MODES[::-1]:
                r = sides[mode]()
                runs.setdefault(mode, []).append(r)
                print(f"{mode:14s} rep {rep}: {r['wall_s']:.2f}s cpu {r['cpu_s']:.2f}s "
                      f"p50 {r['latency_p50_s']:.2f}s p95 {r['latency_p95_s']:.2f}s", flush=True)
    finally:
        server.kill()
    med = {m: statistics.median(x["wall_s"] for x in v) for m, v in runs.items()}
    report = {"questions": args.questions, "latency_s": args.latency, "in_flight": args.in_flight,
              "load_avg": os.getloadavg(), "median_wall_s": med,
              "identical_answers": len({x["answers_sha256"] for v in runs.values() for x in v}) == 1,
              "speedup_vs_stock_default": med["stock_default"] / med["aaflow"],
              "speedup_vs_stock_tuned": med["stock_tuned"] / med["aaflow"], "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"aaflow {report['speedup_vs_stock_default']:.2f}x vs stock defaults, "
          f"{report['speedup_vs_stock_tuned']:.2f}x vs stock max_concurrency={args.in_flight}; "
          f"identical answers: {report['identical_answers']}")


if __name__ == "__main__":
    main()
