"""What the exported backends (ONNX Runtime, OpenVINO) share: the cache folder, its keys, atomic
builds, the traced sentence-transformers graph and the length-sorted batches.

Exports live in a user cache folder keyed by the model path and the versions that shape the
graph; they are written under a file lock and renamed into place, so concurrent ranks are safe.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np


def cache_root() -> Path:
    """$AAFLOW_CACHE_DIR, else $XDG_CACHE_HOME/aaflow, else ~/.cache/aaflow (never site-packages)."""
    if os.environ.get("AAFLOW_CACHE_DIR"):
        return Path(os.environ["AAFLOW_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aaflow"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def export_key(model_path: str, settings: dict[str, Any], packages: Sequence[str]) -> str:
    """Cache key: model folder, its weights' size and mtime, export settings and package versions."""
    folder = Path(model_path).resolve()
    weights = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.glob("*.safetensors"))]
    body = {"model": str(folder), "weights": weights, **settings, "versions": {n: package_version(n) for n in packages}}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]


def build_once(target: Path, build: Callable[[Path], None]) -> None:
    """Build `target` (a file or a folder) unless present; write beside it and rename, so readers never see a partial one."""
    if target.exists():
        return
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    build(partial)
    os.replace(partial, target)


def sentence_graph(st: Any) -> tuple[Any, list[str], Any]:
    """The whole sentence-transformers pipeline (encoder, pooling, normalisation) as one traceable module.

    Returns (module, input names, a tokenised sample batch), ready for an exporter.
    """
    import torch

    names = list(st.tokenizer.model_input_names)

    class SentenceGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.st(dict(zip(names, inputs)))["sentence_embedding"]

    sample = st.tokenizer(["an example sentence", "two"], padding=True, return_tensors="pt")
    return SentenceGraph().eval(), names, sample


def sorted_batches(texts: list[str], batch_size: int, tokenizer: Any, max_length: int,
                   input_names: Sequence[str]) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(row indices, model feeds) per batch: longest texts first (less padding; stable order).

    Tokenisation (padding to the batch's longest, truncation at the model's max length) is the
    same as sentence-transformers', so an exact backend gives its vectors within float rounding.
    """
    order = np.argsort(-np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), kind="stable")
    for start in range(0, len(texts), batch_size):
        rows = order[start : start + batch_size]
        enc = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=max_length,
                        return_tensors="np")
        yield rows, {n: enc[n].astype(np.int64, copy=False) for n in input_names}
