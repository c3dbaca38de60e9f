"""The store's embedding seam: every caller's texts coalesced into one embedding call per micro-batch.

`InMemoryStore` embeds each put and each search query on its own. Here the texts of every
concurrent caller (agents on threads, on one or many event loops) go to one `AsyncBatcher` on the
store's own event-loop thread, which calls the LangChain `Embeddings` object's `aembed_documents`
once per micro-batch (`micro_batch` texts, or what arrived within `max_wait_ms`). Whatever
`Embeddings` the user passes is what is called, so a routed remote client plugs in unchanged.
Queries are embedded as documents: equal for symmetric models (all-MiniLM, OpenAI); a model
whose `embed_query` adds an instruction needs its own store setting (see docs/memory.md).
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
from langchain_core.embeddings import Embeddings

from aaflow_adapters.errors import EmbeddingDimError, EmbeddingOutputError
from aaflow_core.concurrency import AsyncBatcher, BatchPolicy, LoopThread


def unit_rows(rows: Sequence[Sequence[float]] | np.ndarray, texts: Sequence[str], dims: int) -> np.ndarray:
    """A C-contiguous float32 (n, dims) matrix of unit rows (cosine becomes inner product); zero rows stay zero."""
    try:
        matrix = np.array(rows, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise EmbeddingOutputError(f"text {texts[0][:60]!r}", f"embeddings are not numbers of equal length: {exc}") from exc
    if matrix.ndim != 2 or len(matrix) != len(texts):
        raise EmbeddingOutputError(f"text {texts[0][:60]!r}",
                                   f"{len(matrix)} vectors returned for {len(texts)} texts")
    if matrix.shape[1] != dims:
        raise EmbeddingDimError(f"text {texts[0][:60]!r}", f"vectors of {matrix.shape[1]} dims; the store has {dims}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.divide(matrix, norms, out=matrix, where=norms > 0)
    return np.ascontiguousarray(matrix)


class EmbedQueue:
    """Coalesces texts from any thread or event loop into micro-batched `aembed_documents` calls."""

    def __init__(self, embeddings: Embeddings, dims: int, policy: BatchPolicy) -> None:
        self.embeddings, self.dims = embeddings, dims
        self._thread = LoopThread("aaflow-memory-embed")
        self._thread.__enter__()
        self._batcher: AsyncBatcher[str, np.ndarray] = AsyncBatcher(
            self._call, policy, describe=lambda text: f"text {text[:60]!r}")

    @property
    def calls(self) -> int:
        """Embedding calls made so far (counted, for tests and benchmarks)."""
        return self._batcher.stats.calls

    @property
    def batch_sizes(self) -> list[int]:
        return self._batcher.stats.batch_sizes

    async def _call(self, texts: list[str]) -> np.ndarray:
        return unit_rows(await self.embeddings.aembed_documents(texts), texts, self.dims)

    async def _gather(self, texts: list[str]) -> np.ndarray:
        futures = [self._batcher.enqueue(text) for text in texts]
        return np.stack(await asyncio.gather(*futures)) if texts else np.zeros((0, self.dims), np.float32)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors for `texts`, from a thread that is not the queue's own loop."""
        return self._thread.submit(self._gather(texts)).result()

    async def aembed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors for `texts`, awaited from any event loop."""
        return await asyncio.wrap_future(self._thread.submit(self._gather(texts)))

    def close(self) -> None:
        self._thread.submit(self._batcher.aclose()).result()
        self._thread.__exit__(None, None, None)
