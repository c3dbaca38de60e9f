"""The torch engine: the bundled sentence-transformers model in fp32 (the reference), bf16 autocast or int8."""
from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from aaflow_core.models.cpu import cpu_features
from aaflow_core.models.loaders import count_tokens, embedding_dim, load_sentence_transformer, resolve_model
from aaflow_core.models.modes import resolve_mode


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
