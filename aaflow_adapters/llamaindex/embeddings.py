"""`AAFlowEmbedding`: the bundled all-MiniLM-L6-v2 as a LlamaIndex `BaseEmbedding`, on the fastest exact engine.

The LlamaIndex twin of `aaflow_adapters.langchain.embeddings.AAFlowEmbeddings` (same engines, same
`auto` choice per machine); `accelerated(hf)` turns a user's `HuggingFaceEmbedding` of the bundled
model into one, or says what aaflow cannot reproduce.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import Field, PrivateAttr

from aaflow_core.errors import ConfigError
from aaflow_core.models import AUTO, check_request, resolve_model
from aaflow_core.operators import shared_embedder
from aaflow_core.plan import default_threads


class AAFlowEmbedding(BaseEmbedding):
    """The bundled sentence-transformers model on aaflow's engines (torch, ONNX Runtime, OpenVINO)."""

    model: str | None = Field(default=None, description="None: the bundled all-MiniLM-L6-v2")
    precision: str = Field(default=AUTO, description="fp32|bf16|int8, or auto (with backend auto)")
    backend: str = Field(default=AUTO, description="torch|onnx|openvino, or auto")
    threads: int | None = Field(default=None, description="None: every CPU this process may use")
    _embedder: Any = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        check_request(data.get("precision", AUTO), data.get("backend", AUTO))  # ConfigError, not pydantic's wrapper
        super().__init__(**data)

    @classmethod
    def class_name(cls) -> str:
        return "AAFlowEmbedding"

    @property
    def embedder(self) -> Any:
        """The engine, loaded (and for `auto`, chosen) on first use and shared per process."""
        if self._embedder is None:
            self._embedder = shared_embedder(self.model, self.threads or default_threads(), self.precision, self.backend)
        return self._embedder

    def embed_matrix(self, texts: list[str]) -> np.ndarray:
        """(n, dim) C-contiguous float32, no Python floats: what aaflow's own stages read."""
        return self.embedder.encode(list(texts), max(self.embed_batch_size, 1))

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.embed_matrix(texts).tolist() if texts else []

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.embed_matrix([text])[0].tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embedding(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)


def accelerated(embedding: BaseEmbedding, *, precision: str = AUTO, backend: str = AUTO) -> AAFlowEmbedding:
    """An `AAFlowEmbedding` giving what a `HuggingFaceEmbedding` gives (within tolerance), faster.

    Opt-in and explicit: raises ConfigError naming what aaflow cannot reproduce (another model,
    instructions, a shortened max_length, parallel processes).
    """
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    if not isinstance(embedding, HuggingFaceEmbedding):
        raise ConfigError("embed_model", type(embedding).__name__, "only HuggingFaceEmbedding can be accelerated")
    if resolve_model(embedding.model_name) != resolve_model(None):
        raise ConfigError("model_name", embedding.model_name, "aaflow's engines run the bundled all-MiniLM-L6-v2 only")
    st = embedding._model
    if embedding.query_instruction or embedding.text_instruction or any(st.prompts.values()):
        raise ConfigError("query_instruction", embedding.query_instruction, "instructions change the vectors")
    own = json.loads((Path(resolve_model(None)) / "sentence_bert_config.json").read_text())["max_seq_length"]
    if embedding.max_length != own or embedding._parallel_process:
        raise ConfigError("max_length", embedding.max_length, f"aaflow runs the model's own {own} tokens in this process")
    return AAFlowEmbedding(precision=precision, backend=backend, embed_batch_size=embedding.embed_batch_size,
                           callback_manager=embedding.callback_manager)
