"""Peak RSS of `aaflow ingest` for growing corpora: the runtime's memory must not grow with corpus size.

Each size runs in a fresh process (`aaflow ingest`), whose peak RSS comes from `wait4`.
The index writer spills vectors in segments of at most 32 MiB and the output hashes are
running ones, so nothing in the process should scale with the corpus. Embedding gigabytes
at 1000-character chunks takes hours on two CPU cores, so the benchmark uses a very large
chunk size (the model reads only the first 256 tokens of each chunk): every byte is still
read, decoded, chunked, queued, journaled and stored.

    python benchmarks/memory.py --sizes-mb 16 64 256 1024 --out benchmarks/results/memory.json
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import pydoc
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODULES = ("argparse", "collections", "json", "os", "pathlib", "re", "typing", "asyncio", "logging", "subprocess")
FLAGS = ["--chunk-size", "100000", "--chunk-overlap", "0", "--window", "8", "--batch-size", "8", "--threads", "2",
         "--no-progress"]


def make_corpus(folder: Path, size_bytes: int, file_bytes: int = 2**20, seed: int = 0) -> int:
    """Files of real documentation paragraphs, shuffled per file so no two files are equal.

    Paragraphs longer than 4 KiB (whole pydoc sections without a blank line) are left out, so
    a file overshoots `file_bytes` by at most one paragraph.
    """
    paragraphs = [p for name in MODULES
                  for p in pydoc.render_doc(importlib.import_module(name), renderer=pydoc.plaintext).split("\n\n")
                  if len(p) <= 4096]
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written, index = 0, 0
    while written < size_bytes:
        parts, size = [f"Document {index}"], 0
        while size < file_bytes:
            parts.append(rng.choice(paragraphs))
            size += len(parts[-1]) + 2
        data = "\n\n".join(parts).encode()
        (folder / f"doc-{index:05d}.txt").write_bytes(data)
        written, index = written + len(data), index + 1
    return written


def measure(corpus: Path, index: Path, files_per_batch: int, flags: list[str] = FLAGS) -> dict:
    """Run one ingest in a fresh process; its peak RSS (wait4), wall time and index size."""
    cmd = [sys.executable, "-m", "aaflow_core.cli.main", "ingest", str(corpus), "--index", str(index), *flags,
           "--files-per-batch", str(files_per_batch)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    out = proc.stdout.read().decode() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"ingest failed: {out}")
    manifest = json.loads((index / "manifest.json").read_text())
    index_bytes = sum(f.stat().st_size for f in index.glob("index*.faiss"))
    peak = usage.ru_maxrss * 1024
    return {"chunks": manifest["counts"]["chunks"], "peak_rss_mb": round(peak / 2**20, 1),
            "index_mb": round(index_bytes / 2**20, 2), "wall_s": round(time.perf_counter() - t0, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--files-per-batch", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="aaflow-mem-") as tmp:
        for mb in args.sizes_mb:
            corpus = Path(tmp) / f"corpus-{mb}"
            size = make_corpus(corpus, mb * 2**20)
            run = {"corpus_mb": round(size / 2**20, 1), **measure(corpus, Path(tmp) / f"index-{mb}", args.files_per_batch)}
            runs.append(run)
            shutil.rmtree(corpus)
            shutil.rmtree(Path(tmp) / f"index-{mb}")
            print(json.dumps(run), flush=True)
    result = {"flags": FLAGS, "files_per_batch": args.files_per_batch, "file_mb": 1, "runs": runs,
              "cpu_count": os.cpu_count(), "load_avg_after": os.getloadavg()}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
