"""Checkpointed ingest: the upsert stage writes the index as it streams, and each commit is resumable.

Why this resumes bit-identically: the embed stage cuts the chunk stream into windows of
`window` rows counted from the first chunk, whatever the file batches; the upsert stage adds
each window to the index writer and commits it (the window's FAISS segments are fsync'd,
then the journal names them: chunk ids plus segment digests). A resumed run loads and chunks
every file again (cheap next to embedding), takes the rows of every committed window out of
the stream (`ReplayCommitted`, checking their content-derived ids) and gives them to the
writer with the segments already on disk, so only the rest is embedded; those windows start
on the same row boundaries as in an uninterrupted run, so the index is the same, byte for byte.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import pyarrow as pa

from aaflow_core.dataplane.views import embedding_column
from aaflow_core.errors import IndexDirError
from aaflow_core.operators.base import Operator
from aaflow_core.plan import OpSpec
from aaflow_core.runtime.rebatch import Rebatch
from aaflow_core.stores.faiss_store import Committed, IndexWriter, commit_files
from aaflow_core.stores.journal import Journal, Part, ids_sha256

Stages = list[tuple[OpSpec, Operator | Rebatch]]
STAGING = "index"  # the writer's staging directory, inside the checkpoint so that a resume finds it
SEGMENTS_KEY = b"aaflow.segments"  # a journal part's schema metadata: the commit's segment files


class CheckpointedIndex:
    """The run's index writer with its journal: the StoreWriter the upsert stage writes through.

    `on_stored` sees every batch the index gets, in index order (kept rows, replayed windows,
    new windows): the run hashes them there. Rows kept from an index being updated (`before`)
    go first and end a segment, so the windows' segments are named alike on every attempt.
    """

    def __init__(self, journal: Journal, target: Path, on_stored: Callable[[pa.RecordBatch], None],
                 before: Iterable[pa.RecordBatch] = ()) -> None:
        self.journal = journal
        self.on_stored = on_stored
        self.writer = IndexWriter(target, overwrite=True, staging=journal.work / STAGING, resume=bool(journal.parts))
        self.replayed = 0
        self._pending: list[pa.Array] = []
        try:
            for batch in before:
                self.writer.add(batch)
                on_stored(batch)
            self.writer.commit()
            intact = 0
            while intact < len(journal.parts) and self.writer.intact(self.segments_of(journal.parts[intact])):
                intact += 1
            journal.keep(intact)  # a damaged segment and every later one are embedded again
        except BaseException:
            self.writer.close()
            raise

    def segments_of(self, part: Part) -> Committed:
        metadata = self.journal.part_schema(part).metadata or {}
        return commit_files(json.loads(metadata.get(SEGMENTS_KEY, b"[]")))

    def add(self, batch: pa.RecordBatch) -> None:
        self.writer.add(batch)
        self._pending.append(batch.column("chunk_id"))
        self.on_stored(batch)

    def commit(self) -> Committed:
        """The added windows' segments durable first, then the journal line that names them."""
        segments = self.writer.commit()
        ids = pa.concat_arrays(self._pending) if self._pending else pa.array([], pa.string())
        record = pa.RecordBatch.from_arrays([ids], names=["chunk_id"])
        self.journal.commit(record.replace_schema_metadata({SEGMENTS_KEY: json.dumps(segments)}))
        self._pending = []
        return segments

    def replay(self, part: Part, rows: pa.RecordBatch) -> None:
        """A committed window of the killed run: its rows (derived again) with its vectors from disk."""
        segments = self.segments_of(part)
        vectors = self.writer.committed_vectors(segments)
        if len(vectors) != rows.num_rows:
            raise IndexDirError(f"checkpoint part {part.index}: {len(vectors)} vectors for {rows.num_rows} rows; "
                                "pass --overwrite to start over")
        batch = rows.append_column(pa.field("embedding", pa.list_(pa.float32(), vectors.shape[1])),
                                   embedding_column(vectors))
        self.writer.adopt(batch, segments)
        self.on_stored(batch)
        self.replayed += 1

    def finish(self) -> None:
        self.writer.finish()

    def publish(self, manifest: dict) -> Path:
        return self.writer.publish(manifest)

    def close(self) -> None:
        """Close open files, keeping what is staged: the checkpoint resumes from it."""
        self.writer.close()

    def discard(self) -> None:
        self.writer.discard()


class ReplayCommitted(Operator):
    """On resume: takes each committed window's rows out of the chunk stream (checking their ids)
    and hands them to the index with that window's vectors, so only the rest reaches the model."""

    kind = "replay"
    reads = ("chunk_id",)

    def __init__(self, store: CheckpointedIndex) -> None:
        super().__init__("resume.replay")
        self.store = store
        self.parts = list(store.journal.parts)
        self._rows: list[pa.RecordBatch] = []
        self._have = 0

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if not self.parts:
            return batch
        take = min(batch.num_rows, self.parts[0].rows - self._have)
        self._rows.append(batch.slice(0, take))
        self._have += take
        if self._have == self.parts[0].rows:
            self._replay(self.parts.pop(0))
            return self.process(batch.slice(take))
        return batch.slice(take)

    def _replay(self, part: Part) -> None:
        rows = pa.Table.from_batches(self._rows).combine_chunks().to_batches()[0]
        self._rows, self._have = [], 0
        if ids_sha256(rows.column("chunk_id")) != part.ids_sha256:
            raise IndexDirError(f"checkpoint part {part.index} holds other chunks than the input now gives "
                                "(a file changed since the interrupted run); pass --overwrite to start over")
        self.store.replay(part, rows)

    def finish(self) -> None:
        if self.parts:
            raise IndexDirError(f"the input now gives fewer chunks than the checkpoint holds "
                                f"({len(self.parts)} part(s) unmatched); pass --overwrite to start over")


def with_replay(stages: Stages, store: CheckpointedIndex) -> Stages:
    """The bound ingest stages, with a `ReplayCommitted` stage after `chunk` when there is something to replay."""
    if not store.journal.parts:
        return stages
    out: Stages = []
    for spec, impl in stages:
        out.append((spec, impl))
        if spec.kind == "chunk":
            out.append((replace(spec, name="resume.replay", workers=1), ReplayCommitted(store)))
    return out
