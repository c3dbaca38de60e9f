"""LlamaIndex transformations as aaflow map steps over handle batches.

`TransformStep` calls any `TransformComponent` (node parsers, extractors, user components) on
the nodes of one batch and checks that it returned nodes; `EmbedStep` embeds a window of nodes
with the user's `BaseEmbedding`, in micro-batches sent through aaflow's `AsyncBatcher`
(length-sorted for local models; stock's slices in parity mode and for routed remote models,
whose requests may have left early, embed_ahead.py) and returns the vectors as a zero-copy
Arrow column next to the node handles.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import BaseNode, MetadataMode, TransformComponent

from aaflow_core.concurrency import AsyncBatcher, BatchPolicy, RetryPolicy
from aaflow_core.errors import AAFlowError, OperatorError
from aaflow_core.dataplane import embedding_column, embedding_type
from aaflow_core.operators import length_order

from aaflow_adapters.errors import EmbeddingDimError, EmbeddingOutputError, StepOutputError, a_type, name_items
from aaflow_adapters.llamaindex.embed_ahead import EmbedAhead
from aaflow_adapters.llamaindex.nodes import DOC_ID, EMBEDDING, NodeTable
from aaflow_adapters.llamaindex.remote_llm import with_routed_llm
from aaflow_adapters.llamaindex.splitpool import Prefetch, presplit

# Runs a coroutine on the event loop that drives this run and waits for it (from a stage thread).
RunCoro = Callable[[Coroutine[Any, Any, Any]], Any]
# Retries belong to the embedding classes themselves (OpenAI, HuggingFace): never retry twice.
NO_RETRY = RetryPolicy(attempts=1)


class Failure:
    """The earliest transformation that failed in a stream, and its error.

    With `drain` (the cache is on), a failed step records its error instead of raising: it and
    the steps after it stop working while the steps before it finish, so their cache entries
    are complete, as stock's are when a later transformation fails.
    """

    def __init__(self, drain: bool) -> None:
        self.drain = drain
        self.index: int | None = None
        self.error: AAFlowError | None = None
        self._lock = threading.Lock()

    def blocks(self, index: int) -> bool:
        return self.index is not None and index >= self.index

    def outcome(self) -> tuple[int, AAFlowError] | None:
        return None if self.index is None or self.error is None else (self.index, self.error)

    def record(self, index: int, error: AAFlowError) -> None:
        with self._lock:
            if self.index is None or index < self.index:
                self.index, self.error = index, error


class Step:
    """One transformation as a map step over handle batches; `apply` does the work."""

    def __init__(self, index: int, name: str, failure: Failure) -> None:
        self.index = index
        self.name = name
        self.failure = failure

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        raise NotImplementedError

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if self.failure.blocks(self.index):
            return batch.slice(0, 0)
        try:
            return self.apply(batch)
        except Exception as exc:
            if not self.failure.drain:
                raise
            if not isinstance(exc, AAFlowError):  # as the executor would wrap it, naming the first document
                exc = OperatorError(self.name, str(batch.column(DOC_ID)[0].as_py()) if batch.num_rows else None, exc)
            self.failure.record(self.index, exc)
            return batch.slice(0, 0)


def node_name(node: BaseNode) -> str:
    """`node 3f2a... (document json)`: the node and, when it came from one, its source document."""
    return f"node {node.node_id}" + (f" (document {node.ref_doc_id})" if node.ref_doc_id else "")


def checked_nodes(out: Any, step: str, nodes: Sequence[BaseNode]) -> list[BaseNode]:
    """A transformation's output as a list of nodes; StepOutputError naming the step and documents if not.

    Stock fails on the same outputs further on (TypeError for None, AttributeError when the next
    step reads a non-node), without saying which transformation produced them.
    """
    where = f"{step} on the nodes of {name_items(sorted({n.ref_doc_id or n.node_id for n in nodes}))}"
    if out is None or isinstance(out, (str, bytes, Mapping, BaseNode)) or not isinstance(out, Iterable):
        raise StepOutputError(where, f"returned {a_type(out)}; a TransformComponent returns a list of nodes")
    out = list(out)
    for j, node in enumerate(out):
        if not isinstance(node, BaseNode):
            raise StepOutputError(where, f"returned {a_type(node)} at position {j}; a TransformComponent returns "
                                         "a list of nodes")
    return out


class TransformStep(Step):
    """`transform(nodes)` per batch; through `acall` on the run's loop when the run is async."""

    def __init__(self, transform: TransformComponent, table: NodeTable, kwargs: dict[str, Any],
                 run_coro: RunCoro | None = None, *, index: int, name: str, label: str, failure: Failure,
                 split_config: str | None = None, processes: int = 0, prefetch: Prefetch | None = None,
                 ahead: EmbedAhead | None = None) -> None:
        super().__init__(index, name, failure)
        self.transform = with_routed_llm(transform)  # an OpenAI/OpenAILike `llm`: through the remote client
        self.split_config = split_config  # a SentenceSplitter whose texts the split workers may split
        self.processes = processes
        self.prefetch = prefetch  # the stream's input, sent to the workers ahead of this step
        self.ahead = ahead  # early embedding requests: nodes are built once they are all sent
        self.table = table
        self.kwargs = kwargs
        self.run_coro = run_coro
        self.label = label

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        nodes = self.table.pop(batch)
        transform = self.transform
        if self.ahead is not None:
            self.ahead.wait_sent()
        if self.prefetch is not None:
            transform = self.prefetch.splitter_for(nodes)
        elif self.split_config is not None:
            transform = presplit(self.transform, self.split_config, nodes, self.processes)
        if self.run_coro is not None:
            out = self.run_coro(transform.acall(nodes, **self.kwargs))
        else:
            out = transform(nodes, **self.kwargs)
        return self.table.put(checked_nodes(out, self.label, nodes))


class EmbedCaller:
    """Sends micro-batches of texts to a `BaseEmbedding`, `concurrency` calls at a time, results in order.

    Sync runs call the model's public sync batch method on a thread pool (the exact calls stock
    makes, only overlapped); async runs await its async method on the caller's loop. Either way
    the calls go through aaflow's AsyncBatcher, driven by `run_coro`.
    """

    def __init__(self, model: BaseEmbedding, *, batch_size: int, concurrency: int, run_coro: RunCoro,
                 pool: Executor | None, kwargs: dict[str, Any], ahead: EmbedAhead | None = None) -> None:
        self.model = model
        self.ahead = ahead  # early requests (embed_ahead.py), used where their texts are the nodes' own
        self.policy = BatchPolicy(max_batch_size=batch_size, max_in_flight=concurrency)
        self.run_coro = run_coro
        self.pool = pool  # None: use the async API
        self.kwargs = kwargs

    def embed(self, texts: Sequence[str], describe: Callable[[int], str]) -> list[list[float]]:
        async def call(rows: list[int]) -> list[list[float]]:
            chunk = [texts[i] for i in rows]
            early = None if self.ahead is None else self.ahead.take(chunk)
            if early is not None:  # this very call, sent before the nodes were built
                try:
                    out = await early
                except Exception:
                    self.ahead.abandon()  # type: ignore[union-attr]  # stock sends nothing after a failed call
                    raise
            elif self.pool is None:
                out = await self.model.aget_text_embedding_batch(chunk, **self.kwargs)
            else:
                sync = partial(self.model.get_text_embedding_batch, chunk, **self.kwargs)
                out = await asyncio.get_running_loop().run_in_executor(self.pool, sync)
            if len(out) != len(rows):  # stock would pair vectors with the wrong nodes
                raise EmbeddingOutputError(name_items([describe(i) for i in rows]), f"{type(self.model).__name__} "
                                           f"returned {len(out)} vectors for {len(rows)} texts")
            return out

        async def run() -> list[list[float]]:
            batcher = AsyncBatcher(call, self.policy, NO_RETRY, describe=describe)
            results = await batcher.map(range(len(texts)), return_exceptions=True)
            for result in results:  # every call has ended: none is left pending on the loop
                if isinstance(result, BaseException):
                    raise result
            return results  # type: ignore[return-value]

        return self.run_coro(run())


class EmbedStep(Step):
    """Embeds one window: sets `node.embedding` (the model's own values) and adds the Arrow column."""

    def __init__(self, caller: EmbedCaller, table: NodeTable, *, in_order: bool, index: int, name: str,
                 failure: Failure) -> None:
        super().__init__(index, name, failure)
        self.caller = caller
        self.table = table
        self.in_order = in_order  # micro-batches are consecutive slices (stock's), not length-sorted

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        nodes = self.table.pop(batch)
        texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        order = np.arange(len(texts)) if self.in_order else length_order(pa.array(texts, pa.large_string()))
        ordered = [texts[i] for i in order]
        vectors = self.caller.embed(ordered, lambda j: node_name(nodes[order[j]])) if texts else []
        for j, i in enumerate(order):
            nodes[i].embedding = vectors[j]
        return with_embeddings(self.table.put(nodes), nodes)


def with_embeddings(batch: pa.RecordBatch, nodes: Sequence[BaseNode]) -> pa.RecordBatch:
    """Append the nodes' embeddings as one contiguous float32 column (the Arrow side owns it)."""
    if not nodes:
        return batch
    size = len(nodes[0].embedding)
    for node in nodes:
        if len(node.embedding) != size:  # an Arrow column holds vectors of one size
            raise EmbeddingDimError(node_name(node), f"its embedding has {len(node.embedding)} values, "
                                                     f"{node_name(nodes[0])} got {size}")
    matrix = np.ascontiguousarray(np.asarray([n.embedding for n in nodes], dtype=np.float32))
    column = embedding_column(matrix)
    return batch.append_column(pa.field(EMBEDDING, embedding_type(matrix.shape[1])), column)
