"""A checkpoint journal: durable part files plus one JSON line per committed part.

Each commit writes its batch to its own Parquet part, fsyncs it, renames it into place, and
only then appends a journal line naming it with its row count and sha256. A process killed
at any instant therefore leaves a prefix of complete, verifiable parts; `--resume` keeps that
prefix and drops anything after it (a torn last line, a part without a line, a part whose
bytes changed). An ingest's parts are small: the chunk ids of one committed window and, in
the part's schema metadata, the index segments that window went to (pipelines.checkpoint).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from aaflow_core.errors import IndexDirError

JOURNAL_FILE = "journal.jsonl"
PART_FILE = "part-{:06d}.parquet"
LOCK_FILE = "lock"
FORMAT = "aaflow-journal/2"  # /2: an ingest part names index segments instead of holding vectors


def work_dir_for(target: str | os.PathLike[str]) -> Path:
    """The fixed checkpoint directory of an index: hidden, beside it, found again by `--resume`."""
    path = Path(target)
    return path.parent / f".{path.name}.work"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_durably(path: Path, write: Callable[[Path], None]) -> None:
    """What `write(tmp)` puts at `path.tmp` becomes `path`, complete or not at all (fsync, rename, fsync the
    folder). The temporary name starts like the final one, so a checkpoint's cleanup of stale parts finds it."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_durably(path: Path, data: bytes) -> None:
    """`data` at `path`, complete or not at all."""
    publish_durably(path, lambda tmp: tmp.write_bytes(data))


def append_line_durably(path: Path, entry: dict[str, Any]) -> None:
    """One JSON line appended to a journal and fsync'd: the commit point of a part."""
    with open(path, "a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def lock_exclusively(path: Path, error: Exception) -> IO[str]:
    """An open lock file holding an exclusive flock, so one process owns a folder; raises `error` if taken."""
    lock = open(path, "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise error from None
    return lock


def unlock(lock: IO[str]) -> None:
    """Release a `lock_exclusively` lock (idempotent)."""
    if not lock.closed:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ids_sha256(chunk_ids: pa.Array) -> str:
    """Digest of a part's chunk ids: content-derived, so it proves the same rows were re-produced."""
    return hashlib.sha256("\n".join(chunk_ids.to_pylist()).encode()).hexdigest()


def check_checkpoint(work: Path, *, resume: bool, discard: bool) -> bool:
    """Whether `work` holds a checkpoint; refuse to pass over one silently (neither resumed nor discarded)."""
    existing = (work / JOURNAL_FILE).exists()
    if existing and not resume and not discard:
        raise IndexDirError(f"{work}: an interrupted ingest left a checkpoint here; pass --resume to finish it "
                            "or --overwrite to discard it")
    return existing


@dataclass(frozen=True)
class Part:
    index: int
    rows: int
    sha256: str
    ids_sha256: str


class Journal:
    """The committed parts of one (possibly interrupted) run, in `work`; one writer at a time.

    `header` describes the job (plan fingerprint, resources, file list): resuming a journal
    written for a different job is refused, since its parts would not be this job's output.
    """

    def __init__(self, work: Path, header: dict[str, Any], *, resume: bool, discard: bool = False) -> None:
        self.work = work
        self.header = {"format": FORMAT, **header}
        self.parts: list[Part] = []
        self.recovered = 0  # parts found intact when resuming
        existing = check_checkpoint(work, resume=resume, discard=discard)
        work.mkdir(parents=True, exist_ok=True)
        self._lock = lock_exclusively(work / LOCK_FILE,
                                      IndexDirError(f"{work}: another aaflow process is ingesting into this index"))
        if existing and resume:
            self._recover()
        else:
            self._start()

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    def _start(self) -> None:
        for stale in self.work.glob("part-*"):
            stale.unlink()
        self._write_lines([self.header])

    def _recover(self) -> None:
        lines = (self.work / JOURNAL_FILE).read_text().split("\n")
        entries = []
        for line in lines[:-1]:  # the text after the last newline is a torn write, if anything
            entries.append(json.loads(line))
        if not entries or entries[0] != self.header:
            found = entries[0] if entries else {}
            diff = sorted(k for k in set(found) | set(self.header) if found.get(k) != self.header.get(k))
            raise IndexDirError(f"{self.work}: the checkpoint belongs to a different job (differs in {', '.join(diff)}); "
                                "rerun with the same inputs and settings, or pass --overwrite to start over")
        for entry in entries[1:]:
            part = Part(**entry)
            path = self.work / PART_FILE.format(part.index)
            if part.index != len(self.parts) or not path.exists() or file_sha256(path) != part.sha256:
                break
            self.parts.append(part)
        keep = {PART_FILE.format(p.index) for p in self.parts}
        for stale in self.work.glob("part-*"):
            if stale.name not in keep:
                stale.unlink()
        self._write_lines([self.header, *(asdict(p) for p in self.parts)])
        self.recovered = len(self.parts)

    def _write_lines(self, entries: list[dict[str, Any]]) -> None:
        write_durably(self.work / JOURNAL_FILE, "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries).encode())

    def commit(self, batch: pa.RecordBatch) -> Part:
        """Make `batch` durable as the next part; only then does the journal name it."""
        index = len(self.parts)
        path = self.work / PART_FILE.format(index)

        def write(tmp: Path) -> None:
            with pq.ParquetWriter(tmp, batch.schema) as writer:
                writer.write_batch(batch)

        publish_durably(path, write)
        part = Part(index, batch.num_rows, file_sha256(path), ids_sha256(batch.column("chunk_id")))
        append_line_durably(self.work / JOURNAL_FILE, asdict(part))
        self.parts.append(part)
        return part

    def keep(self, count: int) -> None:
        """Forget every part after the first `count` (their data turned out damaged): they are redone."""
        if count >= len(self.parts):
            return
        for part in self.parts[count:]:
            (self.work / PART_FILE.format(part.index)).unlink(missing_ok=True)
        self.parts = self.parts[:count]
        self.recovered = min(self.recovered, count)
        self._write_lines([self.header, *(asdict(p) for p in self.parts)])

    def part_schema(self, part: Part) -> pa.Schema:
        """A committed part's Arrow schema, with the metadata its writer put there."""
        return pq.read_schema(self.work / PART_FILE.format(part.index))

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Every committed part as one batch, in commit order (one part in memory at a time)."""
        for part in self.parts:
            table = pq.read_table(self.work / PART_FILE.format(part.index))
            yield from table.combine_chunks().to_batches(max_chunksize=max(1, table.num_rows))

    def close(self) -> None:
        unlock(self._lock)

    def remove(self) -> None:
        """Delete the checkpoint: the job is published (or had nothing worth keeping)."""
        self.close()
        shutil.rmtree(self.work, ignore_errors=True)
