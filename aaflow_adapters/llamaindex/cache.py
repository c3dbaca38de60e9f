"""The stock ingestion cache, kept exactly while the transformations stream.

Stock LlamaIndex keys each transformation's cache entry by sha256 of the concatenated
`get_content(MetadataMode.ALL)` of *all* its input nodes plus the transformation's settings,
and stores its output nodes as JSON before the next transformation mutates them. Here the
same key is hashed incrementally as batches pass a tap between two stages (in input order),
and the outputs are serialised there; entries are written once the run has finished, so a
cache filled by aaflow serves the stock pipeline and the other way round.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from llama_index.core.ingestion.cache import IngestionCache
from llama_index.core.ingestion.pipeline import get_transformation_hash, remove_unstable_values
from llama_index.core.schema import BaseNode, MetadataMode, TransformComponent
from llama_index.core.storage.docstore.utils import doc_to_json

from aaflow_adapters.llamaindex.nodes import NodeTable


@dataclass
class StepRecord:
    """One transformation's cache key (hashed as its inputs stream past) and its serialised outputs."""

    transform: TransformComponent
    key: str | None = None  # known up front for the first streamed step
    _hasher: Any = field(default_factory=hashlib.sha256)
    outputs: list[dict[str, Any]] = field(default_factory=list)

    def hash_inputs(self, nodes: Sequence[BaseNode]) -> None:
        self._hasher.update("".join(str(n.get_content(metadata_mode=MetadataMode.ALL)) for n in nodes).encode("utf-8"))

    def final_key(self) -> str:
        if self.key is None:
            settings = remove_unstable_values(str(self.transform.to_dict()))
            self._hasher.update(settings.encode("utf-8"))
            self.key = self._hasher.hexdigest()
        return self.key


class CacheTap:
    """A pass-through stage: records the previous step's outputs and hashes the next step's inputs."""

    def __init__(self, table: NodeTable, done: StepRecord | None, upcoming: StepRecord | None) -> None:
        self.table = table
        self.done = done
        self.upcoming = upcoming

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        nodes = self.table.peek(batch)
        if self.done is not None:
            self.done.outputs.extend(doc_to_json(n) for n in nodes)
        if self.upcoming is not None:
            self.upcoming.hash_inputs(nodes)
        return batch


class StepCache:
    """Stock cache semantics over a streamed run: lookups before, writes after."""

    def __init__(self, cache: IngestionCache, collection: str | None) -> None:
        self.cache = cache
        self.collection = collection or cache.collection

    def serve_prefix(
        self, nodes: Sequence[BaseNode], transforms: Sequence[TransformComponent]
    ) -> tuple[Sequence[BaseNode], int, str | None]:
        """Follow cache hits from the first transformation on, as stock does.

        Returns the nodes after the last hit (copies, from the cache), how many transformations
        were served, and the key of the first one that missed.
        """
        for i, transform in enumerate(transforms):
            key = get_transformation_hash(nodes, transform)
            hit = self.cache.get(key, collection=self.collection)
            if hit is None:
                return nodes, i, key
            nodes = hit
        return nodes, len(transforms), None

    def put(self, key: str, nodes: Sequence[BaseNode]) -> None:
        """A transformation that ran on the whole list, stored as stock stores it."""
        self.cache.put(key, nodes, collection=self.collection)

    def write(self, records: Sequence[StepRecord]) -> tuple[int, Sequence[BaseNode]] | None:
        """Store each streamed step's outputs in order; stop where stock would have hit the cache.

        Stock checks the cache before every transformation. If a later step's key is already
        there, stock would have used those cached nodes, so this returns (index, cached nodes)
        and the caller resumes the run from there.
        """
        for i, record in enumerate(records):
            key = record.final_key()
            if i > 0:
                hit = self.cache.get(key, collection=self.collection)
                if hit is not None:
                    return i, hit
            self.cache.cache.put(key, {self.cache.nodes_key: record.outputs}, collection=self.collection)
            record.outputs = []
        return None

    def write_before_failure(self, records: Sequence[StepRecord], failed: int) -> tuple[int, Sequence[BaseNode]] | None:
        """Stock caches each transformation as it completes: store the ones before `failed`.

        If stock would have found one of them, or the failed one itself, in the cache (and so
        never have run it), this returns (index, cached nodes) to resume from, as `write` does.
        """
        resume = self.write(records[:failed])
        if resume is not None:
            return resume
        hit = self.cache.get(records[failed].final_key(), collection=self.collection)
        return (failed, hit) if hit is not None else None
