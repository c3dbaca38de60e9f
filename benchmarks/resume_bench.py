"""What a SIGKILL costs `aaflow ingest`: an uninterrupted run, then a run killed halfway and `--resume`d.

Each run is a fresh `python -m aaflow_core.cli.main ingest` process (model load included, the
same on every side). The killed run is SIGKILLed once its journal names half the windows; the
resume must publish the uninterrupted run's bytes (`index.faiss`, `chunks.parquet`,
`output_sha256`), which this script checks. Reported: wall of the uninterrupted run, of the
resume, the parts the resume took from the checkpoint, and resume / uninterrupted.

    flock /tmp/bench.lock python benchmarks/resume_bench.py [--corpus-kb 256] [--window 32] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aaflow_core.pipelines.corpus import write_stdlib_corpus  # noqa: E402
from aaflow_core.stores.journal import JOURNAL_FILE, work_dir_for  # noqa: E402


def cli(corpus: Path, index: Path, window: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "aaflow_core.cli.main", "ingest", str(corpus), "--index", str(index),
            "--window", str(window), "--threads", "2", "--no-progress", *extra]


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def timed(args: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, env=env())
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return time.perf_counter() - t0, out.stdout


def lines(work: Path) -> int:
    try:
        return (work / JOURNAL_FILE).read_text().count("\n")
    except OSError:
        return 0


def index_bytes(index: Path) -> dict[str, bytes]:
    return {name: (index / name).read_bytes() for name in ("index.faiss", "chunks.parquet")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus-kb", type=int, default=256)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--out", default="benchmarks/results/resume.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aaflow-resume-"))
    corpus = work / "corpus"
    write_stdlib_corpus(corpus, args.corpus_kb * 1024)

    whole_s, _ = timed(cli(corpus, work / "whole", args.window))
    whole = json.loads((work / "whole" / "manifest.json").read_text())
    windows = -(-whole["counts"]["chunks"] // args.window)
    index = work / "killed"
    proc = subprocess.Popen(cli(corpus, index, args.window), env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while lines(work_dir_for(index)) < 1 + windows // 2 and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resume_s, _ = timed(cli(corpus, index, args.window, "--resume"))
    resumed = json.loads((index / "manifest.json").read_text())
    same = index_bytes(index) == index_bytes(work / "whole") and resumed["output_sha256"] == whole["output_sha256"]
    result = {"chunks": whole["counts"]["chunks"], "windows": windows, "uninterrupted_s": round(whole_s, 2),
              "resume_s": round(resume_s, 2), "resumed_parts": resumed["resumed_parts"],
              "resume_over_uninterrupted": round(resume_s / whole_s, 3), "identical_bytes": same,
              "phases_s_uninterrupted": whole["phases_s"], "phases_s_resume": resumed["phases_s"],
              "note": "one run each; the machine is shared with other agents' tests"}
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    if not same:
        raise SystemExit("the resumed index differs from the uninterrupted one")


if __name__ == "__main__":
    main()
