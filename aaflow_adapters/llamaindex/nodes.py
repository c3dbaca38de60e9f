"""Nodes travel through aaflow as Arrow rows of handles; the node objects stay in one process.

LlamaIndex transformations need real `BaseNode` objects, so a record batch carries an `int64`
handle per node (plus its `doc_id` for error messages) and a `NodeTable` holds the objects.
Nothing is pickled or copied between stages: a stage pops the handles it consumes and puts
the nodes it produces. Embeddings ride along as a `fixed_size_list<float32>` column.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence

import pyarrow as pa
from llama_index.core.schema import BaseNode

NODE = "node"
DOC_ID = "doc_id"
EMBEDDING = "embedding"


class NodeTable:
    """Thread-safe handle -> node map; each handle is consumed exactly once by the next stage."""

    def __init__(self) -> None:
        self._nodes: dict[int, BaseNode] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._nodes)

    def put(self, nodes: Sequence[BaseNode]) -> pa.RecordBatch:
        """Register nodes and return their handle batch (`node`, `doc_id`), in the given order."""
        with self._lock:
            keys = [next(self._ids) for _ in nodes]
            self._nodes.update(zip(keys, nodes))
        doc_ids = [n.ref_doc_id or n.node_id for n in nodes]
        return pa.RecordBatch.from_arrays(
            [pa.array(keys, pa.int64()), pa.array(doc_ids, pa.string())], names=[NODE, DOC_ID]
        )

    def peek(self, batch: pa.RecordBatch) -> list[BaseNode]:
        """The batch's nodes, left in the table (for taps that only read)."""
        nodes = self._nodes
        return [nodes[k] for k in batch.column(NODE).to_numpy().tolist()]

    def pop(self, batch: pa.RecordBatch) -> list[BaseNode]:
        """The batch's nodes, removed from the table (the consuming stage owns them now)."""
        with self._lock:
            return [self._nodes.pop(k) for k in batch.column(NODE).to_numpy().tolist()]


def document_key(node: BaseNode) -> str:
    """The document a node belongs to: its source document, or itself when it is one."""
    return node.ref_doc_id or node.node_id


def source_batches(table: NodeTable, nodes: Sequence[BaseNode], batch_chars: int) -> Iterator[pa.RecordBatch]:
    """Consecutive groups of whole documents' nodes, of about `batch_chars` characters each.

    Boundaries depend only on the input and fall only between documents (nodes with another
    `document_key`). Inputs that repeat a node id, or whose documents' nodes are not contiguous,
    go in one batch: node parsers resolve a parent by id within the list they are given.
    """
    keys = [document_key(n) for n in nodes]
    runs = sum(1 for i, k in enumerate(keys) if i == 0 or k != keys[i - 1])
    if len({n.node_id for n in nodes}) != len(nodes) or runs != len(set(keys)):
        if nodes:
            yield table.put(nodes)
        return
    group: list[BaseNode] = []
    size = 0
    for i, node in enumerate(nodes):
        if size >= batch_chars and keys[i] != keys[i - 1]:
            yield table.put(group)
            group, size = [], 0
        group.append(node)
        size += len(node.get_content())
    if group:
        yield table.put(group)
