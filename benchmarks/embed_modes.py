"""Embedding modes on one corpus in one run: chunks/s, FLOPs per chunk, GFLOP/s vs peak, accuracy vs fp32.

    python benchmarks/embed_modes.py [CORPUS_DIR] [--size-mb 0.3] [--rounds 2] [--out benchmarks/results/embed_modes.json]

Without CORPUS_DIR a pydoc corpus of --size-mb is written to a temporary folder (as `aaflow corpus`).
Chunks are the Chunk operator's (1000/100, LangChain-identical); every mode encodes the same
chunks in the same length-sorted batches as the Embed operator. Modes are timed round-robin for
--rounds rounds (other load on the machine hits every mode alike); every round is reported.
FLOPs are the dense transformer count from the model config and real token counts:
per layer 2*t*(4h^2 + 2h*ffn) + 4*t^2*h (projections, FFN, attention scores and mix).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads collapse under CPU contention

import numpy as np  # noqa: E402

from aaflow_core.models import cpu_features, cpu_line, cpu_summary  # noqa: E402
from aaflow_core.models.accuracy import accuracy_report  # noqa: E402
from aaflow_core.models.modes import PrecisionFallbackWarning, bf16_isa  # noqa: E402
from aaflow_core.operators.chunk import RecursiveCharacterChunker  # noqa: E402
from aaflow_core.operators.embed import shared_embedder  # noqa: E402
from aaflow_core.pipelines.corpus import write_stdlib_corpus  # noqa: E402
from aaflow_core.pipelines.embed_accuracy import ordered_encode  # noqa: E402
from aaflow_core.pipelines.ingest import default_threads  # noqa: E402
from aaflow_core.plan import package_versions  # noqa: E402

MODES = (("fp32", "torch"), ("bf16", "torch"), ("int8", "torch"), ("fp32", "onnx"), ("int8", "onnx"),
         ("fp32", "openvino"))
BATCH = 32
# Real questions a reader of the stdlib docs in the 0.3 MB corpus (argparse, re, collections, json) asks.
QUERIES = (
    "How do I add an optional command line flag that stores True?",
    "How can a command line argument accept a variable number of values?",
    "How do I define subcommands with their own arguments?",
    "How can I make two command line options mutually exclusive?",
    "How do I print a custom usage or help message for my program?",
    "How do I match a regular expression at the start of a string?",
    "How can I find all non-overlapping matches of a pattern?",
    "How do I use named groups in a regular expression?",
    "How do I replace matches of a pattern using a function?",
    "How do I make a regular expression ignore case?",
    "How do I split a string by a regular expression?",
    "How do I count how many times each element occurs?",
    "What is a dictionary that supplies default values for missing keys?",
    "How do I create a tuple subclass with named fields?",
    "How do I append and pop items efficiently from both ends of a queue?",
    "How can I keep the insertion order of keys and move a key to the end?",
    "How do I serialize a Python object to a JSON formatted string?",
    "How do I pretty print JSON with indentation and sorted keys?",
    "How can I decode JSON with a custom hook for objects?",
    "How do I encode objects that JSON does not support by default?",
)


def load_chunks(folder: Path) -> list[str]:
    chunker = RecursiveCharacterChunker(1000, 100)
    return [c for path in sorted(folder.glob("*.txt")) for c in chunker.split(path.read_text(encoding="utf-8"))]


def flops(lengths: np.ndarray, hidden: int, ffn: int, layers: int) -> np.ndarray:
    """Dense forward FLOPs of each sequence of `lengths` tokens through the encoder."""
    t = lengths.astype(np.float64)
    return layers * (2 * t * (4 * hidden * hidden + 2 * hidden * ffn) + 4 * t * t * hidden)


def padded_lengths(lengths: np.ndarray, batch: int) -> np.ndarray:
    """Lengths as executed: each length-sorted batch is padded to its longest member."""
    ordered = np.sort(lengths)[::-1]
    return np.concatenate([np.full(len(ordered[i : i + batch]), ordered[i]) for i in range(0, len(ordered), batch)])


def peak_gflops(threads: int, flops_per_cycle: int) -> dict[str, Any]:
    """A rough fp32 peak: threads x current MHz x FMA FLOPs per cycle (bf16 dot products give 2x, int8 VNNI 4x)."""
    mhz = next((float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("cpu MHz")), 0.0)
    fp32 = threads * mhz / 1000 * flops_per_cycle
    return {"mhz": mhz, "threads": threads, "flops_per_cycle_fp32": flops_per_cycle,
            "fp32": fp32, "bf16": fp32 * 2, "int8": fp32 * 4}


def measured_gemm_gflops(threads: int, n: int = 1536, repeats: int = 5) -> float:
    """fp32 GEMM rate this process gets right now (torch.mm, n x n x n, best of `repeats`): the
    in-run peak every engine's GFLOP/s is read against, load and all."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus", nargs="?", type=Path)
    p.add_argument("--size-mb", type=float, default=0.3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=default_threads())
    p.add_argument("--flops-per-cycle", type=int, default=32, help="fp32 FLOPs/cycle/core for the peak estimate")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "embed_modes.json")
    args = p.parse_args(argv)
    folder = args.corpus or Path(tempfile.mkdtemp(prefix="aaflow-bench-"))
    if args.corpus is None:
        write_stdlib_corpus(folder, int(args.size_mb * 2**20))
    chunks = load_chunks(folder)
    load_before = os.getloadavg()  # other work on the machine slows every mode; recorded, not corrected
    print(f"{len(chunks)} chunks from {folder}; {cpu_line()}", file=sys.stderr, flush=True)

    models, load_s = {}, {}
    for precision, backend in MODES:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PrecisionFallbackWarning)
            models[(precision, backend)] = model = shared_embedder(None, args.threads, precision, backend)
        load_s[(precision, backend)] = time.perf_counter() - t0
        model.encode(chunks[:BATCH], BATCH)  # warm-up: kernels, allocator, ONNX Runtime arenas

    seconds: dict[tuple[str, str], list[float]] = {m: [] for m in MODES}
    vectors: dict[tuple[str, str], np.ndarray] = {}
    for _ in range(args.rounds):
        for mode in MODES:
            t0 = time.perf_counter()
            vectors[mode] = ordered_encode(models[mode], chunks, BATCH)
            seconds[mode].append(time.perf_counter() - t0)
            print(f"{mode[1]}-{mode[0]}: {len(chunks) / seconds[mode][-1]:.1f} chunks/s", file=sys.stderr, flush=True)

    gemm = measured_gemm_gflops(args.threads)
    reference = models[("fp32", "torch")]
    cfg = reference.model[0].auto_model.config  # type: ignore[attr-defined]
    lengths = reference.token_lengths(chunks)
    useful = flops(lengths, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers)
    executed = flops(padded_lengths(lengths, BATCH), cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers)
    peak = peak_gflops(args.threads, args.flops_per_cycle)
    ref_queries = reference.encode(list(QUERIES), BATCH)

    results = []
    for mode in MODES:
        model, mean_s = models[mode], float(np.mean(seconds[mode]))
        gflops = useful.sum() / mean_s / 1e9
        results.append({
            "mode": model.mode.effective.label, "requested": f"{mode[1]}-{mode[0]}", "fallback": model.mode.fallback,
            "load_s": round(load_s[mode], 3), "seconds": [round(s, 3) for s in seconds[mode]],
            "chunks_per_s": round(len(chunks) / mean_s, 2), "gflops_per_s": round(gflops, 2),
            "percent_of_peak": (round(100 * gflops / peak[model.mode.effective.precision], 1)
                                if peak["mhz"] else None),
            "percent_of_measured_fp32_gemm": round(100 * gflops / gemm, 1),
            "accuracy": accuracy_report(vectors[("fp32", "torch")], vectors[mode], ref_queries,
                                        model.encode(list(QUERIES), BATCH), k=10),
        })
    fp32_rate = results[0]["chunks_per_s"]
    for r in results:
        r["speedup_vs_fp32"] = round(r["chunks_per_s"] / fp32_rate, 2)
    report = {
        "corpus": {"folder": str(folder), "files": len(list(folder.glob("*.txt"))), "chunks": len(chunks),
                   "mean_tokens": round(float(lengths.mean()), 1), "max_tokens": int(lengths.max())},
        "model": {"hidden": cfg.hidden_size, "ffn": cfg.intermediate_size, "layers": cfg.num_hidden_layers},
        "flops_per_chunk": {"useful": round(float(useful.mean())), "executed_with_padding": round(float(executed.mean()))},
        "peak_gflops_estimate": peak, "measured_fp32_gemm_gflops": round(gemm, 1), "cpu": {**cpu_summary(), "bf16_isa": bf16_isa(cpu_features()),
                                              "avx512_vnni": "avx512_vnni" in cpu_features()},
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "threads": args.threads, "batch_size": BATCH, "rounds": args.rounds, "queries": len(QUERIES),
        "versions": package_versions(), "modes": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(cpu_line())
    print(f"{len(chunks)} chunks, {report['flops_per_chunk']['useful'] / 1e9:.2f} GFLOP/chunk, {args.threads} threads")
    print(f"measured fp32 GEMM: {gemm:.1f} GFLOP/s ({args.threads} threads, torch.mm, this run)")
    print("| mode | chunks/s | x fp32 | GFLOP/s | % peak | % GEMM | max abs diff | min cosine | recall@10 |")
    for r in results:
        a = r["accuracy"]
        label = r["mode"] if r["fallback"] is None else f"{r['requested']} (fell back to {r['mode']})"
        print(f"| {label} | {r['chunks_per_s']} | {r['speedup_vs_fp32']} | {r['gflops_per_s']} | "
              f"{r['percent_of_peak']} | {r['percent_of_measured_fp32_gemm']} | {a['max_abs_diff']:.2e} | {a['min_cosine']:.5f} | {a['recall_at_k']:.3f} |")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
