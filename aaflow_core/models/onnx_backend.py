"""ONNX Runtime backend: the bundled weights exported locally (offline), cached, run with graph optimisation.

The exported graph is the whole sentence-transformers pipeline (encoder, pooling, normalisation),
so a session run returns sentence embeddings directly. int8 is ONNX Runtime's dynamic
quantisation of that graph (per-channel int8 weights, activations quantised per batch).
Exports are cached as `models/export.py` describes.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from aaflow_core.errors import MissingDependencyError
from aaflow_core.models.cpu import cpu_features
from aaflow_core.models.export import build_once, cache_root, export_key, sentence_graph, sorted_batches
from aaflow_core.models.loaders import count_tokens, embedding_dim, load_sentence_transformer, resolve_model
from aaflow_core.models.modes import resolve_mode

OPSET = 17
EXPORT_FORMAT = 1  # bump when the exported graph changes shape, so old caches are not reused
KEY_PACKAGES = ("torch", "transformers", "sentence-transformers", "onnx", "onnxruntime")


def onnx_export_key(model_path: str) -> str:
    return export_key(model_path, {"opset": OPSET, "format": EXPORT_FORMAT}, KEY_PACKAGES)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("onnx/onnxruntime", "onnx onnxruntime  (or: pip install 'aaflow[fast]')") from exc


def _export_fp32(st: Any, target: Path) -> None:
    """Trace the sentence-transformers module (inference mode) into an ONNX graph with dynamic batch/sequence."""
    import torch

    module, names, sample = sentence_graph(st)
    axes = {**{n: {0: "batch", 1: "sequence"} for n in names}, "sentence_embedding": {0: "batch"}}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(sample[n] for n in names), str(target), dynamo=False,
                          input_names=names, output_names=["sentence_embedding"], dynamic_axes=axes,
                          opset_version=OPSET)


def _quantize_int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), per_channel=True, weight_type=QuantType.QInt8)


def onnx_model_file(st: Any, model_path: str, precision: str, cache_dir: Path | None = None) -> Path:
    """Path of the cached ONNX graph for `precision` (fp32 or int8), exporting it first if missing."""
    from filelock import FileLock

    folder = (cache_dir or cache_root()) / "onnx" / onnx_export_key(model_path)
    folder.mkdir(parents=True, exist_ok=True)
    fp32, int8 = folder / "model.onnx", folder / "model.int8.onnx"
    with FileLock(str(folder / ".lock")):
        build_once(fp32, lambda t: _export_fp32(st, t))
        if precision == "int8":
            build_once(int8, lambda t: _quantize_int8(fp32, t))
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
        """Encode texts, longest first, `batch_size` per session run; rows come back in input order."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for rows, feeds in sorted_batches(texts, batch_size, self.tokenizer, self.max_length, self.input_names):
            out[rows] = self.session.run(["sentence_embedding"], feeds)[0]
        return out

    def token_lengths(self, texts: list[str]) -> np.ndarray:
        return count_tokens(self.tokenizer, self.max_length, texts)
