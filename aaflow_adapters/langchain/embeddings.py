"""`AAFlowEmbeddings`: the bundled all-MiniLM-L6-v2 as a LangChain `Embeddings`, on the fastest exact engine.

`precision="auto", backend="auto"` (the default) runs the mode aaflow measured fastest on this CPU
within tolerance of torch fp32 (aaflow_core.models.auto); any explicit mode works too. Vectors are
those of `HuggingFaceEmbeddings` on the same model within the mode's documented tolerance.
`accelerated(hf)` gives the aaflow equivalent of a user's `HuggingFaceEmbeddings`, where its model
and options are ones aaflow reproduces, and says why not otherwise.
"""
from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, PrivateAttr

from aaflow_core.errors import ConfigError
from aaflow_core.models import AUTO, check_request, resolve_model
from aaflow_core.operators import shared_embedder
from aaflow_core.plan import default_threads


class AAFlowEmbeddings(BaseModel, Embeddings):
    """The bundled sentence-transformers model on aaflow's engines (torch, ONNX Runtime, OpenVINO)."""

    model_config = ConfigDict(frozen=True)

    model: str | None = None  # None: the bundled all-MiniLM-L6-v2
    precision: str = AUTO
    backend: str = AUTO
    threads: int | None = None  # None: every CPU this process may use
    batch_size: int = 32
    _embedder: Any = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        check_request(data.get("precision", AUTO), data.get("backend", AUTO))  # ConfigError, not pydantic's wrapper
        if data.get("batch_size", 1) < 1:
            raise ConfigError("batch_size", data["batch_size"], "must be >= 1")
        super().__init__(**data)

    @property
    def embedder(self) -> Any:
        """The engine, loaded (and for `auto`, chosen) on first use and shared per process."""
        if self._embedder is None:
            self._embedder = shared_embedder(self.model, self.threads or default_threads(), self.precision, self.backend)
        return self._embedder

    def embed_matrix(self, texts: list[str]) -> np.ndarray:
        """(n, dim) C-contiguous float32, no Python floats: what aaflow's own stages read."""
        return self.embedder.encode(list(texts), self.batch_size)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_matrix(texts).tolist() if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self.embed_matrix([text])[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)


def accelerated(embeddings: Embeddings, *, precision: str = AUTO, backend: str = AUTO) -> AAFlowEmbeddings:
    """An `AAFlowEmbeddings` giving what a `HuggingFaceEmbeddings` gives (within tolerance), faster.

    Opt-in and explicit: raises ConfigError naming what aaflow cannot reproduce (another model,
    instructions/prompts, multi-process encoding, a device other than the CPU).
    """
    from langchain_huggingface import HuggingFaceEmbeddings

    if not isinstance(embeddings, HuggingFaceEmbeddings):
        raise ConfigError("embeddings", type(embeddings).__name__, "only HuggingFaceEmbeddings can be accelerated")
    path = resolve_model(embeddings.model_name)
    if path != resolve_model(None):
        raise ConfigError("model_name", embeddings.model_name, "aaflow's engines run the bundled all-MiniLM-L6-v2 only")
    if embeddings.multi_process or (embeddings.model_kwargs or {}).get("device", "cpu") != "cpu":
        raise ConfigError("model_kwargs", embeddings.model_kwargs, "aaflow runs on this process's CPU threads")
    for name in ("encode_kwargs", "query_encode_kwargs"):
        extra = set(getattr(embeddings, name) or {}) - {"batch_size", "normalize_embeddings"}
        if extra:
            raise ConfigError(name, sorted(extra), "options that change the vectors are not reproduced")
    batch = int((embeddings.encode_kwargs or {}).get("batch_size", 32))
    return AAFlowEmbeddings(precision=precision, backend=backend, batch_size=batch)
