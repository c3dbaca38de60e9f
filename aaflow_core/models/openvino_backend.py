"""OpenVINO backend: the bundled weights converted locally (offline) into an OpenVINO IR, cached, run in fp32.

The converted graph is the same whole sentence-transformers pipeline the ONNX export traces
(`models/export.py`), converted from the torch module with `openvino.convert_model` (no
optimum-intel, which would pull a CUDA torch). Inference precision is pinned to f32: OpenVINO's
CPU plugin otherwise runs bf16 by itself on CPUs with native bf16, which would change the vectors.
The THROUGHPUT hint runs as many single-threaded streams as cores (its optimal request count); every batch has a fixed
index, so which request runs it never changes where its rows go, and each request computes a
batch alone, so its bits depend only on the batch.
"""
from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from aaflow_core.errors import MissingDependencyError
from aaflow_core.models.cpu import cpu_features
from aaflow_core.models.export import build_once, cache_root, export_key, sentence_graph, sorted_batches
from aaflow_core.models.loaders import count_tokens, embedding_dim, load_sentence_transformer, resolve_model
from aaflow_core.models.modes import resolve_mode

EXPORT_FORMAT = 1  # bump when the converted graph changes, so old caches are not reused
KEY_PACKAGES = ("torch", "transformers", "sentence-transformers", "openvino")
IR_NAME = "model.xml"


def _require_openvino() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise MissingDependencyError("openvino", "openvino  (or: pip install 'aaflow[fast]')") from exc
    return openvino


def _convert(st: Any, target: Path) -> None:
    """Convert the sentence graph to an IR folder (weights kept fp32: no fp16 compression)."""
    import torch

    ov = _require_openvino()
    module, names, sample = sentence_graph(st)
    shapes = [(ov.PartialShape([-1, -1]), ov.Type.i64)] * len(names)  # (batch, sequence), dynamic
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        model = ov.convert_model(module, example_input=tuple(sample[n] for n in names), input=shapes)
    for port, name in zip(model.inputs, names):  # the tokenizer's names, so feeds are matched by name
        port.get_tensor().set_names({name})
    target.mkdir(parents=True)
    ov.save_model(model, str(target / IR_NAME), compress_to_fp16=False)


def openvino_ir(st: Any, model_path: str, cache_dir: Path | None = None) -> Path:
    """Path of the cached IR (model.xml + model.bin), converting it first if missing."""
    from filelock import FileLock

    key = export_key(model_path, {"format": EXPORT_FORMAT}, KEY_PACKAGES)
    folder = (cache_dir or cache_root()) / "openvino" / key
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder.with_name(f"{key}.lock"))):
        build_once(folder, lambda t: _convert(st, t))
    return folder / IR_NAME


class OpenVinoEmbedder:
    """Sentence embeddings from an OpenVINO compiled model (fp32); the tokenizer is the model's own."""

    def __init__(self, model: str | None = None, *, precision: str = "fp32", threads: int | None = None,
                 features: frozenset[str] | None = None, cache_dir: Path | None = None) -> None:
        self.mode = resolve_mode(precision, "openvino", cpu_features() if features is None else features)
        ov = _require_openvino()
        self.path = resolve_model(model)
        st = load_sentence_transformer(self.path)
        self.tokenizer, self.max_length = st.tokenizer, int(st.max_seq_length)
        self.dim = embedding_dim(st)
        self.input_names = list(self.tokenizer.model_input_names)
        self.model_file = openvino_ir(st, self.path, cache_dir)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "THROUGHPUT"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = ov.Core().compile_model(str(self.model_file), "CPU", config)
        self.requests = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        # one encode at a time: each already keeps every stream busy, and two threads feeding
        # infer queues of one compiled model at once were seen to hang in `start_async`
        self._lock = threading.Lock()

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Encode texts longest first, `batch_size` per request, one request per stream at once; rows in input order."""
        import openvino as ov

        out = np.empty((len(texts), self.dim), dtype=np.float32)

        def done(request: Any, rows: np.ndarray) -> None:
            out[rows] = request.get_output_tensor(0).data

        with self._lock:
            queue = ov.AsyncInferQueue(self.compiled, self.requests)
            queue.set_callback(done)
            for rows, feeds in sorted_batches(texts, batch_size, self.tokenizer, self.max_length, self.input_names):
                queue.start_async(feeds, rows)
            queue.wait_all()
        return out

    def token_lengths(self, texts: list[str]) -> np.ndarray:
        return count_tokens(self.tokenizer, self.max_length, texts)
