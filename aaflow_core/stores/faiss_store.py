"""FAISS segments: an inner-product index per shard, written in bounded segments, with its rows in Parquet.

Row i of `chunks.parquet` is vector i of the shard. The vectors are written in segments of at
most `SEGMENT_BYTES` (`index.faiss`, then `index-00001.faiss`, ...), so a writer holds one
segment in memory whatever the corpus size; `commit` also closes the open segment, so what a
checkpoint has committed is on disk as whole segment files, each vector written once. The
directory protocol around the segments (staging, publish, manifest, shards) is `layout`'s.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aaflow_core.dataplane.views import embedding_column, embedding_matrix
from aaflow_core.errors import IndexDirError
from aaflow_core.stores.journal import file_sha256, fsync_dir
from aaflow_core.stores.layout import ROWS_FILE, check_target, index_shards, new_staging, publish_staging, read_manifest
from aaflow_core.stores.search import exact_topk

INDEX_FILE = "index.faiss"
SEGMENT_FILE = "index-{:05d}.faiss"
SEGMENT_BYTES = 32 * 2**20  # 21845 rows of 384 float32 dimensions
Committed = list[tuple[str, str]]  # (segment file name, sha256) made durable by one commit


def commit_files(committed: Sequence[Sequence[str]]) -> Committed:
    """A commit record read back from JSON (lists) as the writer's (name, sha256) pairs."""
    return [(str(name), str(sha)) for name, sha in committed]


def _faiss() -> Any:
    import faiss

    return faiss


def segment_path(shard: Path, k: int) -> Path:
    return shard / (INDEX_FILE if k == 0 else SEGMENT_FILE.format(k))


def segment_paths(shard: Path) -> list[Path]:
    """A shard's vector segments, in row order."""
    paths = [segment_path(shard, 0)]
    while segment_path(shard, len(paths)).exists():
        paths.append(segment_path(shard, len(paths)))
    return paths


def read_vectors(shard: Path) -> Any:
    """One shard's FAISS index: its segments read and merged in row order."""
    first, *rest = segment_paths(shard)
    index = _faiss().read_index(str(first))
    for path in rest:
        index.merge_from(_faiss().read_index(str(path)))
    return index


def stored_batches(path: str | os.PathLike[str], batch_rows: int = 4096) -> Iterator[pa.RecordBatch]:
    """Every stored row with its vector (an `embedding` column), in global row order.

    Streams: one Parquet batch of rows and one vector segment in memory at a time.
    """
    for shard in index_shards(path):
        segments = iter(segment_paths(shard.path))
        vectors, used = np.empty((0, 0), np.float32), 0
        for batch in pq.ParquetFile(shard.rows_file).iter_batches(batch_size=batch_rows):
            start = 0
            while start < batch.num_rows:
                if used == len(vectors):
                    segment = _faiss().read_index(str(next(segments)))
                    vectors, used = segment.reconstruct_n(0, segment.ntotal), 0
                take = min(batch.num_rows - start, len(vectors) - used)
                rows = batch.slice(start, take)
                yield pa.RecordBatch.from_arrays([*rows.columns, embedding_column(vectors[used : used + take])],
                                                 names=[*rows.schema.names, "embedding"])
                start, used = start + take, used + take


class IndexWriter:
    """Streams rows and vectors into a staging directory; `publish` makes them the index (a StoreWriter).

    Rows go to the Parquet sidecar batch by batch; vectors to a FAISS segment that is written
    out every `segment_bytes` (whole rows, at least one) and at every `commit`, so memory stays
    bounded; the boundaries depend only on the rows added and where commits fell. With a fixed
    `staging` (a checkpoint's) and `resume`, the segments a killed run committed are kept there
    for `adopt`; everything else in it is rewritten.
    """

    def __init__(self, target: str | os.PathLike[str], *, overwrite: bool = False,
                 segment_bytes: int = SEGMENT_BYTES, staging: Path | None = None, resume: bool = False) -> None:
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be >= 1, got {segment_bytes}")
        self.target = Path(target)
        check_target(self.target, overwrite)
        if staging is None:
            self.staging = new_staging(self.target)
        else:
            if not resume:
                shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True, exist_ok=True)
            self.staging = staging
        self.segment_bytes = segment_bytes
        self.segment_rows = 0  # known at the first batch, from its dimension
        self.segments = 0  # written so far
        self._committed = 0  # segments made durable by `commit`
        self._index: Any = None
        self._rows: pq.ParquetWriter | None = None
        self.count = 0

    def add(self, batch: pa.RecordBatch) -> None:
        """Add a batch with an `embedding` column; FAISS receives a view of its Arrow buffer."""
        vectors = embedding_matrix(batch.column("embedding"))
        start = 0
        while start < len(vectors):
            if self._index is None:
                self._index = _faiss().IndexFlatIP(vectors.shape[1])
                self.segment_rows = max(1, self.segment_bytes // vectors[0].nbytes)
            take = min(len(vectors) - start, self.segment_rows - self._index.ntotal)
            self._index.add(vectors[start : start + take])
            start += take
            if self._index.ntotal == self.segment_rows:
                self._write_segment()
        self._write_rows(batch)

    def _write_rows(self, batch: pa.RecordBatch) -> None:
        rows = batch.drop_columns(["embedding"])
        if self._rows is None:
            # no column statistics: min/max of every text row group would fill the footer,
            # which the writer holds in memory until it closes
            self._rows = pq.ParquetWriter(self.staging / ROWS_FILE, rows.schema, write_statistics=False)
        self._rows.write_batch(rows)
        self.count += batch.num_rows

    def _write_segment(self) -> None:
        _faiss().write_index(self._index, str(segment_path(self.staging, self.segments)))
        self.segments += 1
        self._index = None

    def commit(self) -> Committed:
        """Write the open segment and fsync every segment since the last commit: their names and sha256.

        The rows are not made durable: a resumed run derives them again from its input.
        """
        if self._index is not None:
            self._write_segment()
        paths = [segment_path(self.staging, k) for k in range(self._committed, self.segments)]
        for path in paths:
            with open(path, "rb+") as f:
                os.fsync(f.fileno())
        fsync_dir(self.staging)
        self._committed = self.segments
        return [(p.name, file_sha256(p)) for p in paths]

    def intact(self, committed: Committed) -> bool:
        """Whether a killed run's commit is still in staging, byte for byte."""
        return all((self.staging / name).exists() and file_sha256(self.staging / name) == sha for name, sha in committed)

    def committed_vectors(self, committed: Committed) -> np.ndarray:
        """The vectors of a killed run's commit, read back from its segments (to hash and join with rows)."""
        parts = []
        for name, _ in committed:
            segment = _faiss().read_index(str(self.staging / name))
            parts.append(segment.reconstruct_n(0, segment.ntotal))
        return np.vstack(parts) if parts else np.empty((0, 0), np.float32)

    def adopt(self, batch: pa.RecordBatch, committed: Committed) -> None:
        """Take a killed run's commit as the next rows: `batch` holds its rows, its segments are already here."""
        expected = [segment_path(self.staging, self.segments + i).name for i in range(len(committed))]
        if self._index is not None or [name for name, _ in committed] != expected:
            raise IndexDirError(f"{self.staging}: checkpointed segments {[n for n, _ in committed]} do not follow "
                                f"the {self.segments} segment(s) written; pass --overwrite to start over")
        self._write_rows(batch)
        self.segments = self._committed = self.segments + len(committed)

    def finish(self) -> None:
        """Write the last segment, close the sidecar and drop a killed run's leftovers (still in staging)."""
        if self._rows is not None:
            self._rows.close()
            self._rows = None
        if self._index is not None:
            self._write_segment()
        keep = {segment_path(self.staging, k).name for k in range(self.segments)} | {ROWS_FILE}
        for path in self.staging.iterdir():
            if path.name not in keep:
                path.unlink()

    def publish(self, manifest: dict[str, Any]) -> Path:
        """Write the manifest and atomically swap the staging directory into place."""
        return publish_staging(self.staging, self.target, manifest)

    def close(self) -> None:
        """Close the sidecar, keeping what is staged (a checkpoint resumes from its committed segments)."""
        if self._rows is not None:
            self._rows.close()
            self._rows = None

    def discard(self) -> None:
        self.close()
        shutil.rmtree(self.staging, ignore_errors=True)


class IndexReader:
    """Opens a published index: vectors in FAISS, rows memory-mapped from Parquet (a StoreReader).

    A sharded index (written by N ranks) opens as one: its shards' vectors are merged into one
    FAISS index and their rows concatenated, in global row order.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        shards = index_shards(self.path)
        self.rows = pa.concat_tables([pq.read_table(s.rows_file, memory_map=True) for s in shards])
        self.index = read_vectors(shards[0].path)
        for shard in shards[1:]:
            self.index.merge_from(read_vectors(shard.path))

    def __len__(self) -> int:
        return self.rows.num_rows

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Batched exact search: (scores, ids), each (n_queries, min(k, rows)), ties to the lower row."""
        return exact_topk(self.index, queries, k)

    def vectors(self) -> np.ndarray:
        """All stored vectors, in row order (a copy out of FAISS)."""
        return self.index.reconstruct_n(0, self.index.ntotal)
