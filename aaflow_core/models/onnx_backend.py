"""ONNX Runtime backend: the bundled weights exported locally (offline), cached, run with graph optimisation.

The exported graph is the whole sentence-transformers pipeline (encoder, pooling, normalisation),
so a session run returns sentence embeddings directly. int8 is ONNX Runtime's dynamic
quantisation of that graph (per-channel int8 weights, activations quantised per batch).
Exports live in a user cache folder keyed by the model path and the versions that shape the
graph; they are written under a file lock and renamed into place, so concurrent ranks are safe.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from aaflow_core.errors import MissingDependencyError
from aaflow_core.models.embedding import (
    count_tokens, embedding_dim, load_sentence_transformer, resolve_model,
)
from aaflow_core.models.cpu import cpu_features
from aaflow_core.models.modes import resolve_mode

OPSET = 17
EXPORT_FORMAT = 1  # bump when the exported graph changes shape, so old caches are not reused
KEY_PACKAGES = ("torch", "transformers", "sentence-transformers", "onnx", "onnxruntime")


def cache_root() -> Path:
    """$AAFLOW_CACHE_DIR, else $XDG_CACHE_HOME/aaflow, else ~/.cache/aaflow (never site-packages)."""
    if os.environ.get("AAFLOW_CACHE_DIR"):
        return Path(os.environ["AAFLOW_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aaflow"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def export_key(model_path: str) -> str:
    """Cache key: model folder, its weights' size and mtime, export settings and package versions."""
    folder = Path(model_path).resolve()
    weights = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.glob("*.safetensors"))]
    body = {"model": str(folder), "weights": weights, "opset": OPSET, "format": EXPORT_FORMAT,
            "versions": {n: _version(n) for n in KEY_PACKAGES}}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("onnx/onnxruntime", "onnx onnxruntime  (or: pip install 'aaflow[fast]')") from exc


def _export_fp32(st: Any, target: Path) -> None:
    """Trace the sentence-transformers module (inference mode) into an ONNX graph with dynamic batch/sequence."""
    import torch

    names = list(st.tokenizer.model_input_names)

    class SentenceGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.st(dict(zip(names, inputs)))["sentence_embedding"]

    sample = st.tokenizer(["an example sentence", "two"], padding=True, return_tensors="pt")
    axes = {**{n: {0: "batch", 1: "sequence"} for n in names}, "sentence_embedding": {0: "batch"}}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(SentenceGraph().eval(), tuple(sample[n] for n in names), str(target), dynamo=False,
                          input_names=names, output_names=["sentence_embedding"], dynamic_axes=axes,
                          opset_version=OPSET)


def _quantize_int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), per_channel=True, weight_type=QuantType.QInt8)


def _build_once(target: Path, build: Callable[[Path], None]) -> None:
    """Build `target` unless present; write beside it and rename, so readers never see a partial file."""
    if target.exists():
        return
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    build(partial)
    os.replace(partial, target)


def onnx_model_file(st: Any, model_path: str, precision: str, cache_dir: Path | None = None) -> Path:
    """Path of the cached ONNX graph for `precision` (fp32 or int8), exporting it first if missing."""
    from filelock import FileLock

    folder = (cache_dir or cache_root()) / "onnx" / export_key(model_path)
    folder.mkdir(parents=True, exist_ok=True)
    fp32, int8 = folder / "model.onnx", folder / "model.int8.onnx"
    with FileLock(str(folder / ".lock")):
        _build_once(fp32, lambda t: _export_fp32(st, t))
        if precision == "int8":
            _build_once(int8, lambda t: _quantize_int8(fp32, t))
    return int8 if precision == "int8" else fp32


class OnnxEmbedder:
    """Sentence embeddings from an ONNX Runtime session; the tokenizer is the model's own."""

    def __init__(self, model: str | None = None, *, precision: str = "fp32", threads: int | None = None,
                 features: frozenset[str] | None = None, cache_dir: Path | None = None) -> None:
        self.mode = resolve_mode(precision, "onnx", cpu_features() if features is None else features)
        _require_onnx()
        import onnxruntime as ort

        self.path = resolve_model(model)
        st = load_sentence_transformer(self.path)
        self.tokenizer, self.max_length = st.tokenizer, int(st.max_seq_length)
        self.dim = embedding_dim(st)
        self.input_names = list(self.tokenizer.model_input_names)
        self.model_file = onnx_model_file(st, self.path, self.mode.effective.precision, cache_dir)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's own default (all cores)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(self.model_file), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Encode texts, longest first (less padding; stable order), `batch_size` per session run; rows come back in input order."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = np.argsort(-np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), kind="stable")
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            enc = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="np")
            feeds = {n: enc[n].astype(np.int64, copy=False) for n in self.input_names}
            out[rows] = self.session.run(["sentence_embedding"], feeds)[0]
        return out

    def token_lengths(self, texts: list[str]) -> np.ndarray:
        return count_tokens(self.tokenizer, self.max_length, texts)
