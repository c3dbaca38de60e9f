"""The store's embedding seam: every caller's texts coalesced into one embedding call per micro-batch.

`InMemoryStore` embeds each put and each search query on its own. Here the texts of every
concurrent caller (agents on threads, on one or many event loops) go to one `AsyncBatcher` on the
store's own event-loop thread, which calls the LangChain `Embeddings` object's `aembed_documents`
once per micro-batch: `micro_batch` texts, or what arrived until a `max_wait_ms` pause (at most
`max_delay_ms` after the first), and while every call slot is busy the batch keeps filling, so a
slow model gets larger batches instead of a queue of small ones. Whatever
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
from aaflow_core.errors import ConfigError


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

    def __init__(self, embeddings: Embeddings, dims: int, loop: LoopThread, *, micro_batch: int,
                 max_wait_ms: float, max_delay_ms: float, max_in_flight: int) -> None:
        if max_delay_ms < max_wait_ms:
            raise ConfigError("max_delay_ms", max_delay_ms, f"must be >= max_wait_ms ({max_wait_ms})")
        self.embeddings, self.dims = embeddings, dims
        self._quiet_s, self._cap_s = max_wait_ms / 1000, max_delay_ms / 1000
        self._timer: asyncio.TimerHandle | None = None
        self._opened: float | None = None  # when the open micro-batch got its first text
        self._open, self._micro_batch = 0, micro_batch  # texts in the open micro-batch
        self._max_in_flight = max_in_flight
        self._thread = loop
        # no deadline of its own: full micro-batches go at once, the rest when `_close_batch` flushes
        policy = BatchPolicy(max_batch_size=micro_batch, max_wait_ms=None, max_in_flight=max_in_flight)
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
        try:
            return unit_rows(await self.embeddings.aembed_documents(texts), texts, self.dims)
        finally:
            asyncio.get_running_loop().call_soon(self._after_call)

    def _after_call(self) -> None:
        """A slot is free: send the open batch if its quiet period ran out while every slot was busy."""
        if self._open and self._timer is None:
            self._close_batch()

    async def _gather(self, texts: list[str]) -> np.ndarray:
        futures = []
        for text in texts:
            futures.append(self._batcher.enqueue(text))
            self._open += 1
            if self._open == self._micro_batch:  # the batcher sent it, full: the next text opens a new one
                self._open, self._opened = 0, None
        if self._open:
            self._arm()
        return np.stack(await asyncio.gather(*futures)) if texts else np.zeros((0, self.dims), np.float32)

    def _arm(self) -> None:
        """Close the open micro-batch after `max_wait_ms` without a new text, or `max_delay_ms` after it opened.

        A quiet period rather than a fixed deadline: agents reach the store a few milliseconds
        apart, so a burst keeps filling one batch instead of being cut into many small ones.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._opened = now if self._opened is None else self._opened
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(min(now + self._quiet_s, self._opened + self._cap_s), self._close_batch)

    def _close_batch(self) -> None:
        self._timer = None
        if self._batcher.stats.in_flight >= self._max_in_flight:
            return  # every call slot is busy: the batch keeps filling until one ends (`_after_call`)
        self._opened, self._open = None, 0
        self._batcher.flush()

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors for `texts`, from a thread that is not the queue's own loop."""
        return self._thread.submit(self._gather(texts)).result()

    async def aembed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors for `texts`, awaited from any event loop."""
        return await asyncio.wrap_future(self._thread.submit(self._gather(texts)))

    def close(self) -> None:
        """Wait for every call in flight (the loop thread belongs to the store)."""
        self._thread.submit(self._batcher.aclose()).result()
