"""Embed: a `text` column -> a `fixed_size_list<float32>[dim]` column, built without copies.

Each input batch is one window: its rows are sorted by length (longest first, ties by
position) and encoded `encode_batch_size` rows at a time through the async batcher, so
padding stays small and the micro-batch composition depends only on the input and the
configuration, which keeps the embeddings bit-identical from run to run.
The model runs in the plan's mode (precision x backend, see aaflow_core.models.modes).
"""
from __future__ import annotations

import asyncio
import warnings
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aaflow_core.dataplane.views import embedding_column
from aaflow_core.models.embedding import Embedder, build_embedder
from aaflow_core.models.auto import choose_mode
from aaflow_core.models.modes import AUTO, PrecisionFallbackWarning, ResolvedMode, check_mode, check_request, warn_fallback
from aaflow_core.operators.base import Operator
from aaflow_core.remote.embedder import EndpointEmbedder, RemoteMode, endpoint_embedder
from aaflow_core.concurrency import AsyncBatcher, BatchPolicy, LoopThread


def shared_embedder(model: str | None, threads: int, precision: str = "fp32", backend: str = "torch") -> Embedder:
    """One model per process and configuration (mode included): loading costs seconds, encoding is reentrant.

    A precision fallback is warned on every call, not only on the call that loaded the model, so a
    run is told about it whatever ran before it in the process (it is also in `embedder.mode`).
    `auto` for both precision and backend is the mode measured fastest on this machine (models.auto).
    """
    if check_request(precision, backend)[0] == AUTO:
        choice = choose_mode(model, threads)
        precision, backend = choice.precision, choice.backend
    embedder = _cached_embedder(model, threads, precision, backend)
    warn_fallback(embedder.mode, stacklevel=3)
    return embedder


def models_loaded() -> int:
    """How many models this process has loaded: a multi-host job reports it per rank (once each)."""
    return _cached_embedder.cache_info().misses


@lru_cache(maxsize=6)
def _cached_embedder(model: str | None, threads: int, precision: str, backend: str) -> Embedder:
    # keyed on every argument by position, so defaulted and spelled-out calls share one model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionFallbackWarning)  # shared_embedder warns, once per call
        return build_embedder(model, precision=precision, backend=backend, threads=threads)


def length_order(texts: pa.Array) -> np.ndarray:
    """Row order for encoding: longest first, ties by position (a stable, input-only order)."""
    lengths = pc.utf8_length(texts).to_numpy(zero_copy_only=False)
    return np.lexsort((np.arange(len(lengths)), -lengths))


class EmbedOperator(Operator):
    kind = "embed"
    reads = ("text",)

    def __init__(self, name: str | None = None, *, model: str | None = None, encode_batch_size: int = 32,
                 threads: int = 1, precision: str = "fp32", backend: str = "torch", endpoint: str | None = None,
                 rpm: float | None = None, tpm: float | None = None) -> None:
        super().__init__(name)
        self.model_name = model
        self.remote = (endpoint, rpm, tpm) if endpoint is not None else None
        self.encode_batch_size = encode_batch_size
        self.threads = threads
        self.requested = check_mode(precision, backend)
        self.embedder: Embedder | EndpointEmbedder | None = None
        self._loop: LoopThread | None = None

    def open(self) -> None:
        if self.remote is not None:
            assert self.model_name is not None
            self.embedder = endpoint_embedder(self.remote[0], self.model_name, self.remote[1], self.remote[2])
            return
        self.embedder = shared_embedder(self.model_name, self.threads, self.requested.precision,
                                        self.requested.backend)
        self._loop = LoopThread("aaflow-embed").__enter__()

    def close(self) -> None:
        if self._loop is not None:
            self._loop.__exit__(None, None, None)
            self._loop = None

    @property
    def dim(self) -> int:
        assert self.embedder is not None, "open() first"
        return self.embedder.dim

    @property
    def mode(self) -> ResolvedMode | RemoteMode:
        """The mode asked for and the one running (they differ after a bf16 fallback)."""
        assert self.embedder is not None, "open() first"
        return self.embedder.mode

    def embed_texts(self, texts: pa.Array) -> np.ndarray:
        """(n, dim) float32 matrix for `texts`, in their order."""
        assert self.embedder is not None, "open() first"
        n = len(texts)
        if n == 0:
            return np.empty((n, self.dim), dtype=np.float32)
        order = length_order(texts)
        ordered = texts.take(pa.array(order)).to_pylist()
        embedder, size = self.embedder, self.encode_batch_size
        if isinstance(embedder, EndpointEmbedder):  # every request of the window at once, under the limiter
            matrix = embedder.encode(ordered, size)
            out = np.empty_like(matrix)
            out[order] = matrix
            return out
        assert self._loop is not None, "open() first"
        out = np.empty((n, self.dim), dtype=np.float32)

        async def encode(chunk: list[str]) -> list[np.ndarray]:
            return list(await asyncio.to_thread(embedder.encode, chunk, size))

        async def run() -> list[np.ndarray]:
            batcher = AsyncBatcher(encode, BatchPolicy(max_batch_size=size, max_in_flight=1))
            return await batcher.map(ordered)  # type: ignore[return-value]

        out[order] = np.stack(self._loop.run(run()))
        return out

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        self.check_input(batch)
        matrix = self.embed_texts(batch.column("text"))
        return batch.append_column(pa.field("embedding", pa.list_(pa.float32(), self.dim)), embedding_column(matrix))
