"""Checkpointed ingest: the upsert stage commits each embedding window as a durable journal part.

Why this resumes bit-identically: the embed stage cuts the chunk stream into windows of
`window` rows counted from the first chunk, whatever the file batches; each window is one
part. A resumed run loads and chunks every file again (cheap next to embedding), drops the
rows the journal already holds (checking their content-derived ids part by part), and
embeds the rest; those windows start on the same row boundaries as in an uninterrupted run,
so every part, and the index assembled from the parts, is the same.
"""
from __future__ import annotations

import hashlib
import json
import itertools
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from aaflow_core.errors import IndexDirError
from aaflow_core.operators.base import Operator
from aaflow_core.plan import OpSpec
from aaflow_core.runtime.rebatch import Rebatch
from aaflow_core.stores.faiss_store import IndexWriter
from aaflow_core.stores.journal import Journal, ids_sha256

Stages = list[tuple[OpSpec, Operator | Rebatch]]


def job_header(fingerprint: str, resources: dict[str, Any], files: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the plan, the resources and the file list."""
    listing = json.dumps([list(f) for f in files], separators=(",", ":")).encode()
    return {"fingerprint": fingerprint, "resources": resources, "files_sha256": hashlib.sha256(listing).hexdigest(),
            "files": len(files)}


class SkipCommitted(Operator):
    """Drops the first rows of the chunk stream that the journal already holds, checking their ids."""

    kind = "skip"
    reads = ("chunk_id",)

    def __init__(self, journal: Journal) -> None:
        super().__init__("resume.skip")
        self.parts = list(journal.parts)
        self._ids: list[pa.Array] = []
        self._have = 0

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if not self.parts:
            return batch
        take = min(batch.num_rows, self.parts[0].rows - self._have)
        self._ids.append(batch.column("chunk_id").slice(0, take))
        self._have += take
        if self._have == self.parts[0].rows:
            self._check(self.parts.pop(0))
            return self.process(batch.slice(take))
        return batch.slice(take)

    def _check(self, part: Any) -> None:
        got = ids_sha256(pa.concat_arrays(self._ids))
        self._ids, self._have = [], 0
        if got != part.ids_sha256:
            raise IndexDirError(f"checkpoint part {part.index} holds other chunks than the input now gives "
                                "(a file changed since the interrupted run); pass --overwrite to start over")

    def finish(self) -> None:
        if self.parts:
            raise IndexDirError(f"the input now gives fewer chunks than the checkpoint holds "
                                f"({len(self.parts)} part(s) unmatched); pass --overwrite to start over")


class CommitOperator(Operator):
    """Stands in for `upsert`: each window becomes a journal part; passes the batch through."""

    kind = "upsert"
    reads = ("chunk_id", "text", "embedding")

    def __init__(self, name: str, journal: Journal) -> None:
        super().__init__(name)
        self.journal = journal

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        self.check_input(batch)
        if batch.num_rows:
            self.journal.commit(batch)
        return batch


def checkpointed(stages: Stages, journal: Journal) -> Stages:
    """The bound ingest stages with `upsert` committing to `journal` and, on resume, skipping its rows."""
    out: Stages = []
    for spec, impl in stages:
        if spec.kind == "upsert":
            impl = CommitOperator(impl.name, journal)
        out.append((spec, impl))
        if spec.kind == "chunk" and journal.parts:
            out.append((spec, SkipCommitted(journal)))
    return out


def assemble(journal: Journal, target: Path, on_batch: Callable[[pa.RecordBatch], None],
             before: Iterable[pa.RecordBatch] = ()) -> IndexWriter:
    """Stream `before` (rows kept from an index being updated), then the parts, into an unpublished writer.

    `on_batch` sees every batch written, in order (hashing).
    """
    writer = IndexWriter(target, overwrite=True)
    try:
        for batch in itertools.chain(before, journal.batches()):
            writer.add(batch)
            on_batch(batch)
        writer.finish()
    except BaseException:
        writer.discard()
        raise
    return writer
