"""aaflow ingest vs the model-only floor on the same chunk texts, in one process.

The floor is one `SentenceTransformer.encode` call over exactly the chunk texts aaflow stored
(so it does no loading, chunking or upserting, and gets the best length sorting possible).
The model is loaded before either side is timed. Runs alternate (floor, aaflow, floor, ...)
and the median of each side is reported, with every repetition in the JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from aaflow_core.operators.embed import shared_embedder
from aaflow_core.pipelines import IngestConfig, ingest
from aaflow_core.pipelines.corpus import write_stdlib_corpus
from aaflow_core.plan import package_versions
from aaflow_core.stores import IndexReader


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", nargs="?", help="corpus folder (default: write a 1 MiB pydoc corpus)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/ingest.json")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="aaflow-bench-"))
    corpus = Path(args.corpus) if args.corpus else work / "corpus"
    if not args.corpus:
        write_stdlib_corpus(corpus, 2**20)
    embedder = shared_embedder(None, args.threads)
    embedder.encode(["warm up"] * 8)

    runs: dict[str, list[float]] = {"floor": [], "aaflow": []}
    texts: list[str] = []
    sha = set()
    for rep in range(args.repeats):
        cfg = IngestConfig(paths=(str(corpus),), index_dir=str(work / "index"), threads=args.threads,
                           batch_size=args.batch_size, window=args.window, overwrite=True, progress=False)
        t0 = time.perf_counter()
        result = ingest(cfg)
        runs["aaflow"].append(time.perf_counter() - t0)
        sha.add(result.manifest["output_sha256"])
        texts = IndexReader(work / "index").rows.column("text").to_pylist()
        t0 = time.perf_counter()
        embedder.model.encode(texts, batch_size=args.batch_size, convert_to_numpy=True)
        runs["floor"].append(time.perf_counter() - t0)
        print(f"rep {rep}: aaflow {runs['aaflow'][-1]:.2f}s  floor {runs['floor'][-1]:.2f}s  phases {result.manifest['phases_s']}")

    med = {k: statistics.median(v) for k, v in runs.items()}
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "versions": package_versions(),
        "config": vars(args) | {"corpus": str(corpus), "chunks": len(texts),
                                "corpus_bytes": sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file())},
        "runs_s": runs,
        "median_s": med,
        "ratio_aaflow_over_floor": med["aaflow"] / med["floor"],
        "chunks_per_s": {k: len(texts) / v for k, v in med.items()},
        "distinct_output_sha256": len(sha),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"{len(texts)} chunks: aaflow {med['aaflow']:.2f}s vs floor {med['floor']:.2f}s "
          f"-> ratio {report['ratio_aaflow_over_floor']:.3f} (distinct output hashes: {len(sha)})")


if __name__ == "__main__":
    main()
