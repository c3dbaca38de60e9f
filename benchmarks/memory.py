"""Peak RSS of `aaflow ingest` for growing corpora: the runtime's memory must not grow with corpus size.

Each size runs in a fresh process (`aaflow ingest`), whose peak RSS is its VmHWM.
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

    Paragraphs longer than 4 KiB in UTF-8 (whole pydoc sections without a blank line) are left
    out, and sizes are counted in bytes, so a file overshoots `file_bytes` by at most one 4 KiB
    paragraph whatever the live modules render (pydoc shows process state, e.g. `os.environ`).
    """
    paragraphs = [p for name in MODULES
                  for p in pydoc.render_doc(importlib.import_module(name), renderer=pydoc.plaintext).split("\n\n")
                  if len(p.encode()) <= 4096]
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written, index = 0, 0
    while written < size_bytes:
        parts, size = [f"Document {index}"], 0
        while size < file_bytes:
            parts.append(rng.choice(paragraphs))
            size += len(parts[-1].encode()) + 2
        data = "\n\n".join(parts).encode()
        (folder / f"doc-{index:05d}.txt").write_bytes(data)
        written, index = written + len(data), index + 1
    return written


def peak_rss_bytes(proc: subprocess.Popen) -> int:
    """Peak RSS of a running child: the VmHWM of its own address space, polled until it exits.

    wait4's ru_maxrss is no good here: Linux carries the high-water mark across exec, so a
    child forked from a large process (a test session with models loaded) reports the parent's size.
    """
    peak = 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
        except OSError:  # exiting
            pass
        time.sleep(0.05)
    return peak


def measure(corpus: Path, index: Path, files_per_batch: int, flags: list[str] = FLAGS) -> dict:
    """Run one ingest in a fresh process; its peak RSS, wall time and index size."""
    cmd = [sys.executable, "-m", "aaflow_core.cli.main", "ingest", str(corpus), "--index", str(index), *flags,
           "--files-per-batch", str(files_per_batch)]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        peak = peak_rss_bytes(proc)
        if proc.returncode != 0:
            log.seek(0)
            raise RuntimeError(f"ingest failed: {log.read().decode(errors='replace')[-4000:]}")
    manifest = json.loads((index / "manifest.json").read_text())
    index_bytes = sum(f.stat().st_size for f in index.glob("index*.faiss"))
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
