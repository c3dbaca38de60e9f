"""`--precision auto --backend auto`: the fastest embedding mode this machine runs within tolerance.

Which engine is fastest is a property of the CPU (AMX makes bf16 2.5x; on an AVX2-only EPYC
OpenVINO fp32 is ~1.2x and bf16 is emulated), so it is measured, not guessed: a short
calibration encodes the same real text with each candidate mode, keeps those whose vectors
stay within their documented tolerance of torch-fp32 with recall@10 >= 0.99, and picks the
fastest. The result is cached per CPU model, feature set, thread count, model and package
versions, so a machine pays for it once.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aaflow_core.models.accuracy import compare, recall_at_k
from aaflow_core.models.cpu import cpu_features, cpu_model
from aaflow_core.models.embedding import build_embedder
from aaflow_core.models.loaders import resolve_model
from aaflow_core.models.export import cache_root, package_version
from aaflow_core.models.modes import TOLERANCES, EmbedMode, bf16_isa

MIN_RECALL = 0.99
MIN_GAIN = 1.03  # a mode must beat torch-fp32 by this much: calibration timings are noisy
KEY_PACKAGES = ("torch", "transformers", "sentence-transformers", "onnxruntime", "openvino")
CALIBRATION_MODULES = ("smtplib", "ftplib", "imaplib")  # none of them in the demo corpus: benchmarks stay held out


@dataclass(frozen=True)
class AutoChoice:
    """The chosen mode, why, and what was measured (recorded in the manifest)."""

    precision: str
    backend: str
    why: str
    measured: dict[str, dict[str, float]]  # label -> chunks_per_s, speedup, max_abs_diff, recall_at_k, accepted
    cpu: str
    when: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def candidates(features: frozenset[str]) -> list[EmbedMode]:
    """Modes that may be exact enough: every fp32 engine, plus bf16 where the CPU has native bf16."""
    modes = [EmbedMode("fp32", "torch"), EmbedMode("fp32", "onnx"), EmbedMode("fp32", "openvino")]
    if bf16_isa(features):
        modes.append(EmbedMode("bf16", "torch"))
    return modes


def calibration_texts(n: int = 48, size: int = 1000) -> list[str]:
    """Real prose (pydoc pages of standard modules) cut into `n` pieces of `size` characters."""
    import importlib
    import pydoc

    text = "".join(pydoc.render_doc(importlib.import_module(m), renderer=pydoc.plaintext) for m in CALIBRATION_MODULES)
    step = max(size, (len(text) - size) // n)
    return [text[i : i + size] for i in range(0, step * n, step)][:n]


def calibration_key(model: str | None, threads: int, modes: list[EmbedMode]) -> str:
    body = {"cpu": cpu_model(), "features": sorted(cpu_features()), "threads": threads,
            "model": str(Path(resolve_model(model)).resolve()), "modes": [m.label for m in modes],
            "versions": {p: package_version(p) for p in KEY_PACKAGES}}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]


def calibrate(model: str | None, threads: int, modes: list[EmbedMode], texts: list[str],
              rounds: int = 2) -> AutoChoice:
    """Time each mode on `texts` (rounds interleaved, best round kept) and pick the fastest accepted one."""
    embedders = {m.label: build_embedder(model, precision=m.precision, backend=m.backend, threads=threads)
                 for m in modes}
    for e in embedders.values():
        e.encode(texts[:8])  # warm-up: kernels, allocator, thread pools
    seconds: dict[str, float] = {}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        for label, e in embedders.items():
            t0 = time.perf_counter()
            vectors[label] = e.encode(texts)
            seconds[label] = min(seconds.get(label, float("inf")), time.perf_counter() - t0)
    ref = vectors["torch-fp32"]
    measured: dict[str, dict[str, float]] = {}
    for label, v in vectors.items():
        figures = compare(ref, v)
        recall = recall_at_k(ref, ref[:16], v, v[:16], k=10)
        accepted = TOLERANCES[label].admits(figures) and recall >= MIN_RECALL
        measured[label] = {"chunks_per_s": round(len(texts) / seconds[label], 2),
                           "speedup": round(seconds["torch-fp32"] / seconds[label], 3),
                           "max_abs_diff": figures["max_abs_diff"], "recall_at_k": recall, "accepted": accepted}
    best = max((lbl for lbl, m in measured.items() if m["accepted"] and (lbl == "torch-fp32" or m["speedup"] >= MIN_GAIN)),
               key=lambda lbl: measured[lbl]["speedup"])
    m = measured[best]
    why = (f"{best}: {m['speedup']}x torch-fp32 ({m['chunks_per_s']} chunks/s) on {len(texts)} calibration chunks, "
           f"max abs diff {m['max_abs_diff']:.1e}, recall@10 {m['recall_at_k']:.3f}; fastest of "
           f"{', '.join(sorted(measured))} within tolerance (a mode must beat torch-fp32 by {MIN_GAIN}x)")
    mode = next(md for md in modes if md.label == best)
    return AutoChoice(mode.precision, mode.backend, why, measured, cpu_model(),
                      datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def choose_mode(model: str | None, threads: int, *, modes: list[EmbedMode] | None = None,
                texts: list[str] | None = None, cache_dir: Path | None = None) -> AutoChoice:
    """The cached choice for this machine and configuration, calibrating first if there is none."""
    from filelock import FileLock

    modes = modes or candidates(cpu_features())
    folder = (cache_dir or cache_root()) / "auto"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{calibration_key(model, threads, modes)}.json"
    with FileLock(str(target.with_suffix(".lock"))):
        if target.exists():
            return AutoChoice(**json.loads(target.read_text()))
        choice = calibrate(model, threads, modes, texts or calibration_texts())
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(choice.to_dict(), indent=2))
        os.replace(partial, target)
    return choice
