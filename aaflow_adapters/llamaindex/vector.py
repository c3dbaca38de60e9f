"""Hand the pipeline's nodes to its vector store in bulk.

Stock calls `vector_store.add(nodes_with_embeddings)` once; `FaissVectorStore.add` then loops
over the nodes, building a one-row array and calling `faiss.Index.add` per node. For a plain
`FaissVectorStore` aaflow instead passes each output batch's Arrow embedding column to
`faiss.Index.add` as a zero-copy view: same vectors, same order, so the same FAISS ids.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.types import BasePydanticVectorStore

from aaflow_core.dataplane import buffer_address, embedding_matrix

from aaflow_adapters.errors import EmbeddingDimError


@dataclass
class Segment:
    """A run of output nodes and, when the embedding step produced it, their embedding column."""

    nodes: list[BaseNode]
    column: pa.Array | None = None


@dataclass
class VectorWrite:
    nodes: int = 0
    calls: int = 0
    shared_buffers: list[int] = field(default_factory=list)  # Arrow buffer addresses handed to FAISS


def is_plain_faiss(store: BasePydanticVectorStore | None) -> bool:
    """Only the exact `FaissVectorStore` class: subclasses (e.g. the id-map store) keep their own `add`."""
    try:
        from llama_index.vector_stores.faiss import FaissVectorStore
    except ImportError:
        return False
    return type(store) is FaissVectorStore


def embedded(segments: Sequence[Segment]) -> list[BaseNode]:
    return [n for s in segments for n in s.nodes if n.embedding is not None]


def check_dims(index: Any, segments: Sequence[Segment]) -> None:
    """Every vector fits the index, checked before the first add (stock adds node by node until
    faiss's bare AssertionError), so a failed write adds nothing and the docstore stays in step."""
    for seg in segments:
        if seg.column is not None and len(seg.column) == len(seg.nodes) and seg.column.type.list_size == index.d:
            continue
        for node in seg.nodes:
            if node.embedding is not None and len(node.embedding) != index.d:
                raise EmbeddingDimError(f"node {node.node_id}", f"its embedding has {len(node.embedding)} values, "
                                                                f"the FAISS index holds {index.d}-value vectors")


def check_write(store: BasePydanticVectorStore | None, segments: Sequence[Segment]) -> None:
    """What can be checked before anything is written (the docstore decisions come next)."""
    if is_plain_faiss(store):
        check_dims(store.client, segments)  # type: ignore[union-attr]


def add_to_faiss(store: BasePydanticVectorStore, segments: Sequence[Segment]) -> VectorWrite:
    """One `Index.add` per segment; an Arrow column goes in as a view, other nodes as one matrix."""
    index = store.client
    out = VectorWrite()
    for seg in segments:
        if seg.column is not None and len(seg.column) == len(seg.nodes):
            vectors = embedding_matrix(seg.column)
            out.shared_buffers.append(buffer_address(seg.column))
        else:  # nodes that arrived with embeddings or came back from the cache: one visible copy
            rows = [n.embedding for n in seg.nodes if n.embedding is not None]
            if not rows:
                continue
            vectors = np.asarray(rows, dtype=np.float32)
        index.add(vectors)
        out.calls += 1
        out.nodes += len(vectors)
    return out


async def add_nodes(store: BasePydanticVectorStore, segments: Sequence[Segment],
                    add: Callable[[list[BaseNode]], Awaitable[None]]) -> VectorWrite:
    """The nodes with embeddings into `store`, in order (after `check_write`): a plain FAISS store by
    Arrow column, any other by `add`, its own add as the run calls it (`add` in run, `async_add` in arun)."""
    if is_plain_faiss(store):
        return add_to_faiss(store, segments)
    nodes = embedded(segments)
    if nodes:
        await add(nodes)
    return VectorWrite(nodes=len(nodes), calls=1 if nodes else 0)
