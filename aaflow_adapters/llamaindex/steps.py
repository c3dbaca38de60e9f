"""LlamaIndex transformations as aaflow map steps over handle batches.

`TransformStep` calls any `TransformComponent` (node parsers, extractors, user components) on
the nodes of one batch; `EmbedStep` embeds a window of nodes with the user's `BaseEmbedding`,
in micro-batches sent through aaflow's `AsyncBatcher` (length-sorted, or the stock slices in
parity mode) and returns the vectors as a zero-copy Arrow column next to the node handles.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Executor
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import BaseNode, MetadataMode, TransformComponent

from aaflow_core.concurrency import AsyncBatcher, BatchPolicy, RetryPolicy
from aaflow_core.dataplane.schemas import embedding_type
from aaflow_core.dataplane.views import embedding_column
from aaflow_core.operators.embed import length_order

from aaflow_adapters.llamaindex.nodes import EMBEDDING, NodeTable

# Runs a coroutine on the event loop that drives this run and waits for it (from a stage thread).
RunCoro = Callable[[Coroutine[Any, Any, Any]], Any]
# Retries belong to the embedding classes themselves (OpenAI, HuggingFace): never retry twice.
NO_RETRY = RetryPolicy(attempts=1)


class TransformStep:
    """`transform(nodes)` per batch; through `acall` on the run's loop when the run is async."""

    def __init__(self, transform: TransformComponent, table: NodeTable, kwargs: dict[str, Any],
                 run_coro: RunCoro | None = None) -> None:
        self.transform = transform
        self.table = table
        self.kwargs = kwargs
        self.run_coro = run_coro

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        nodes = self.table.pop(batch)
        if self.run_coro is not None:
            out = self.run_coro(self.transform.acall(nodes, **self.kwargs))
        else:
            out = self.transform(nodes, **self.kwargs)
        return self.table.put(list(out))


class EmbedCaller:
    """Sends micro-batches of texts to a `BaseEmbedding`, `concurrency` calls at a time, results in order.

    Sync runs call the model's public sync batch method on a thread pool (the exact calls stock
    makes, only overlapped); async runs await its async method on the caller's loop. Either way
    the calls go through aaflow's AsyncBatcher, driven by `run_coro`.
    """

    def __init__(self, model: BaseEmbedding, *, batch_size: int, concurrency: int, run_coro: RunCoro,
                 pool: Executor | None, kwargs: dict[str, Any]) -> None:
        self.model = model
        self.policy = BatchPolicy(max_batch_size=batch_size, max_in_flight=concurrency)
        self.run_coro = run_coro
        self.pool = pool  # None: use the async API
        self.kwargs = kwargs

    def embed(self, texts: Sequence[str], describe: Callable[[int], str]) -> list[list[float]]:
        async def call(rows: list[int]) -> list[list[float]]:
            chunk = [texts[i] for i in rows]
            if self.pool is None:
                return await self.model.aget_text_embedding_batch(chunk, **self.kwargs)
            sync = partial(self.model.get_text_embedding_batch, chunk, **self.kwargs)
            return await asyncio.get_running_loop().run_in_executor(self.pool, sync)

        async def run() -> list[list[float]]:
            batcher = AsyncBatcher(call, self.policy, NO_RETRY, describe=describe)
            results = await batcher.map(range(len(texts)))
            return results  # type: ignore[return-value]

        return self.run_coro(run())


class EmbedStep:
    """Embeds one window: sets `node.embedding` (the model's own values) and adds the Arrow column."""

    def __init__(self, caller: EmbedCaller, table: NodeTable, *, parity: bool) -> None:
        self.caller = caller
        self.table = table
        self.parity = parity

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        nodes = self.table.pop(batch)
        texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        order = np.arange(len(texts)) if self.parity else length_order(pa.array(texts, pa.large_string()))
        ordered = [texts[i] for i in order]
        vectors = self.caller.embed(ordered, lambda j: f"node {nodes[order[j]].node_id}") if texts else []
        for j, i in enumerate(order):
            nodes[i].embedding = vectors[j]
        return with_embeddings(self.table.put(nodes), nodes)


def with_embeddings(batch: pa.RecordBatch, nodes: Sequence[BaseNode]) -> pa.RecordBatch:
    """Append the nodes' embeddings as one contiguous float32 column (the Arrow side owns it)."""
    if not nodes:
        return batch
    matrix = np.ascontiguousarray(np.asarray([n.embedding for n in nodes], dtype=np.float32))
    column = embedding_column(matrix)
    return batch.append_column(pa.field(EMBEDDING, embedding_type(matrix.shape[1])), column)
