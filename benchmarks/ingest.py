"""aaflow ingest vs the model-only floor on the same chunk texts, in one process.

The floor is one `SentenceTransformer.encode` call over exactly the chunk texts aaflow stored
(so it does no loading, chunking or upserting, and gets the best length sorting possible).
The model is loaded before either side is timed. Runs alternate (floor, aaflow, floor, ...)
and the median of each side is reported, with every repetition in the JSON.

    python benchmarks/ingest.py [CORPUS] [--threads 2] [--repeats 3] [--out benchmarks/results/ingest.json]

`native_side` and `floor_side` are the suite's sides for the same two measurements
(`python -m benchmarks run --suite ingest`).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aaflow_core.operators.embed import shared_embedder  # noqa: E402
from aaflow_core.pipelines import IngestConfig, ingest  # noqa: E402
from aaflow_core.pipelines.corpus import write_stdlib_corpus  # noqa: E402
from aaflow_core.plan import package_versions  # noqa: E402
from aaflow_core.stores import IndexReader  # noqa: E402


def texts_sha256(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode() + b"\0")
    return h.hexdigest()


@contextlib.contextmanager
def cpu_hog(on: bool) -> Iterator[None]:
    """A pure-Python busy thread competing for the GIL and a core: perturbs every thread's timing."""
    stop = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            x = (x * 31 + 7) % 1000003

    thread = threading.Thread(target=spin, daemon=True)
    if on:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if on:
            thread.join()


def native_side(corpus: str, threads: int = 2, batch_size: int = 32, window: int = 256,
                backend: str = "threads", hog: bool = False, vectors: bool = True) -> Callable[[], dict[str, Any]]:
    """`aaflow ingest` on `corpus` (model loaded and warmed here, untimed); returns the timed run."""
    shared_embedder(None, threads).encode(["warm up"] * 8)
    work = tempfile.mkdtemp(prefix="aaflow-bench-")
    index = Path(work) / "index"
    first = [vectors]

    def run() -> dict[str, Any]:
        cfg = IngestConfig(paths=(corpus,), index_dir=str(index), threads=threads, batch_size=batch_size,
                           window=window, overwrite=True, progress=False, executor=backend)
        with cpu_hog(hog):
            t0 = time.perf_counter()
            result = ingest(cfg)
            wall = time.perf_counter() - t0
        reader = IndexReader(index)
        texts = reader.rows.column("text").to_pylist()
        out = {"wall_s": wall, "phases_s": result.manifest["phases_s"], "overlapped": True, "rows": len(texts),
               "output_sha256": result.manifest["output_sha256"], "texts_sha256": texts_sha256(texts)}
        if first[0]:  # the matrix travels once, for the parent's cross-side comparison
            out["vectors"], first[0] = reader.vectors(), False
        return out

    weakref.finalize(run, shutil.rmtree, work, ignore_errors=True)  # the index goes with the side
    return run


def floor_side(corpus: str, threads: int = 2, batch_size: int = 32) -> Callable[[], dict[str, Any]]:
    """One `encode` over the chunk texts (aaflow's LangChain-identical chunker, 1000/100): the model's floor."""
    from aaflow_core.operators.chunk import RecursiveCharacterChunker

    chunker = RecursiveCharacterChunker(1000, 100)
    texts = [c for p in sorted(Path(corpus).glob("*.txt")) for c in chunker.split(p.read_text(encoding="utf-8"))]
    embedder = shared_embedder(None, threads)
    embedder.encode(["warm up"] * 8)

    def run() -> dict[str, Any]:
        t0 = time.perf_counter()
        embedder.model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
        wall = time.perf_counter() - t0
        return {"wall_s": wall, "phases_s": {"embed": wall}, "overlapped": False, "rows": len(texts),
                "texts_sha256": texts_sha256(texts)}

    return run


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
    aaflow = native_side(str(corpus), args.threads, args.batch_size, args.window, vectors=False)
    floor = floor_side(str(corpus), args.threads, args.batch_size)
    runs: dict[str, list[float]] = {"floor": [], "aaflow": []}
    sha, chunks = set(), 0
    for rep in range(args.repeats):
        a = aaflow()
        runs["aaflow"].append(a["wall_s"])
        sha.add(a["output_sha256"])
        f = floor()
        runs["floor"].append(f["wall_s"])
        chunks = a["rows"]
        print(f"rep {rep}: aaflow {a['wall_s']:.2f}s  floor {f['wall_s']:.2f}s  phases {a['phases_s']}")

    med = {k: statistics.median(v) for k, v in runs.items()}
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "versions": package_versions(),
        "config": vars(args) | {"corpus": str(corpus), "chunks": chunks,
                                "corpus_bytes": sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file())},
        "runs_s": runs,
        "median_s": med,
        "ratio_aaflow_over_floor": med["aaflow"] / med["floor"],
        "chunks_per_s": {k: chunks / v for k, v in med.items()},
        "distinct_output_sha256": len(sha),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"{chunks} chunks: aaflow {med['aaflow']:.2f}s vs floor {med['floor']:.2f}s "
          f"-> ratio {report['ratio_aaflow_over_floor']:.3f} (distinct output hashes: {len(sha)})")


if __name__ == "__main__":
    main()
