"""A FAISS inner-product index plus a Parquet sidecar of its rows, written atomically.

Row i of `chunks.parquet` is vector i of the index. The vectors are written in segments of
at most `SEGMENT_BYTES` (`index.faiss`, then `index-00001.faiss`, ...), so a writer holds one
segment in memory whatever the corpus size. A writer stages everything in a sibling
temporary directory and publishes it with a rename, so a crash or a failed rank never leaves
a half-written index where a good one was, and a directory that is not an aaflow index is
never touched.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aaflow_core.dataplane.views import embedding_column, embedding_matrix
from aaflow_core.errors import IndexDirError
from aaflow_core.stores.search import exact_topk

INDEX_FILE = "index.faiss"
SEGMENT_FILE = "index-{:05d}.faiss"
SEGMENT_BYTES = 32 * 2**20  # 21845 rows of 384 float32 dimensions
ROWS_FILE = "chunks.parquet"
MANIFEST_FILE = "manifest.json"
FORMAT = "aaflow-index/1"
SHARD_DIR = "shard-{:05d}"


def _faiss() -> Any:
    import faiss

    return faiss


def is_aaflow_index(path: Path) -> bool:
    try:
        return json.loads((path / MANIFEST_FILE).read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a published index, or IndexDirError naming the directory."""
    if not is_aaflow_index(path):
        raise IndexDirError(f"{path}: not an aaflow index (no {MANIFEST_FILE} of format {FORMAT})")
    return json.loads((path / MANIFEST_FILE).read_text())


def check_target(path: Path, overwrite: bool) -> None:
    """Refuse to replace anything but an aaflow index, and that only when asked."""
    if not path.exists():
        return
    if not path.is_dir():
        raise IndexDirError(f"{path}: exists and is not a directory; refusing to overwrite it")
    if not any(path.iterdir()):
        return
    if not is_aaflow_index(path):
        raise IndexDirError(f"{path}: not empty and not an aaflow index; refusing to overwrite it")
    if not overwrite:
        raise IndexDirError(f"{path}: an aaflow index already exists; pass --overwrite to replace it")


def new_staging(target: Path) -> Path:
    """A fresh hidden directory beside `target`, on the same file system so a rename publishes it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))


def clear_stale(target: Path) -> list[Path]:
    """Remove staging and replaced-index directories that killed runs left beside `target`.

    Call only while holding the target's checkpoint lock: then no other writer owns them.
    """
    stale = [*target.parent.glob(f".{target.name}.staging-*"), *target.parent.glob(f".{target.name}.old-*")]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def publish_staging(staging: Path, target: Path, manifest: dict[str, Any]) -> Path:
    """Write the manifest last, then swap `staging` into `target` by renames (the old index goes last)."""
    body = {"format": FORMAT, **manifest}
    (staging / MANIFEST_FILE).write_text(json.dumps(body, indent=2, sort_keys=True))
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old)
    return target


@dataclass(frozen=True)
class Shard:
    """One FAISS index + sidecar of an index; its rows are global rows offset..offset+rows-1."""

    path: Path
    offset: int
    rows: int


def index_shards(path: str | os.PathLike[str]) -> list[Shard]:
    """The shards of a published index in global row order: itself, or those its manifest lists.

    An index written by N ranks keeps one sub-index per rank (`shard-00000`, ...) and lists
    them, with their row counts, under `shards` in its manifest.
    """
    root = Path(path)
    manifest = read_manifest(root)
    listed = manifest.get("shards")
    if not listed:
        return [Shard(root, 0, int(manifest["counts"]["chunks"]))]
    shards, offset = [], 0
    for entry in listed:
        shards.append(Shard(root / entry["dir"], offset, int(entry["rows"])))
        offset += int(entry["rows"])
    return shards


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
        for batch in pq.ParquetFile(shard.path / ROWS_FILE).iter_batches(batch_size=batch_rows):
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
    """Streams rows and vectors into a staging directory; `publish` makes them the index.

    Rows go to the Parquet sidecar batch by batch; vectors to a FAISS segment that is written
    out every `segment_bytes` (whole rows, at least one), so memory stays bounded however many
    rows are added; the boundaries depend only on the row count and the dimension.
    """

    def __init__(self, target: str | os.PathLike[str], *, overwrite: bool = False,
                 segment_bytes: int = SEGMENT_BYTES) -> None:
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be >= 1, got {segment_bytes}")
        self.target = Path(target)
        check_target(self.target, overwrite)
        self.staging = new_staging(self.target)
        self.segment_bytes = segment_bytes
        self.segment_rows = 0  # known at the first batch, from its dimension
        self.segments = 0  # written so far
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

    def finish(self) -> None:
        """Write the last segment and close the sidecar (still in staging)."""
        if self._rows is not None:
            self._rows.close()
            self._rows = None
        if self._index is not None:
            self._write_segment()

    def publish(self, manifest: dict[str, Any]) -> Path:
        """Write the manifest and atomically swap the staging directory into place."""
        return publish_staging(self.staging, self.target, manifest)

    def discard(self) -> None:
        if self._rows is not None:
            self._rows.close()
            self._rows = None
        shutil.rmtree(self.staging, ignore_errors=True)


class IndexReader:
    """Opens a published index: vectors in FAISS, rows memory-mapped from Parquet.

    A sharded index (written by N ranks) opens as one: its shards' vectors are merged into one
    FAISS index and their rows concatenated, in global row order.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        shards = index_shards(self.path)
        self.rows = pa.concat_tables([pq.read_table(s.path / ROWS_FILE, memory_map=True) for s in shards])
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
