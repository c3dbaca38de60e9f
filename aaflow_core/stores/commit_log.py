"""A durable directory of Arrow record batches: a Parquet snapshot plus an append-only commit log.

Every commit appends one frame (payload length, payload sha256, an Arrow IPC stream) to the log
and fsyncs it before returning, so a committed batch survives a crash. A crash in the middle of
an append leaves a torn or unverifiable last frame, which opening cuts off: the state is always
the last committed one. `compact` writes the whole state as a new snapshot beside the old one,
then switches the manifest to it with an atomic rename and starts an empty log; a crash at any
point of that leaves either the old generation or the new one, complete.

Layout: `manifest.json` (format, generation, the owner's `meta`), `snapshot-<gen>.parquet`
(absent before the first compaction), `log-<gen>.arrows`, and a `lock` file held while open.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from aaflow_core.errors import IndexDirError
from aaflow_core.stores.journal import fsync_dir, lock_exclusively, publish_durably, unlock, write_durably

FORMAT = "aaflow-commit-log/1"
MANIFEST = "manifest.json"
HEADER = struct.Struct("<Q32s")  # payload bytes, sha256 of the payload


def _snapshot(gen: int) -> str:
    return f"snapshot-{gen:06d}.parquet"


def _log(gen: int) -> str:
    return f"log-{gen:06d}.arrows"


class CommitLog:
    """Owns one directory (exclusively, by a lock) whose record batches all share `schema`."""

    def __init__(self, path: str | os.PathLike[str], schema: pa.Schema, meta: dict[str, Any]) -> None:
        self.path = Path(path)
        self.schema = schema
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = lock_exclusively(self.path / "lock",
                                      IndexDirError(f"{self.path}: already open in another store (lock held)"))
        self.generation, self.meta = self._open_manifest(meta)
        self._drop_other_generations()
        self.commits = 0  # log frames since the last snapshot
        self._log = open(self.path / _log(self.generation), "ab")

    def _open_manifest(self, meta: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        manifest = self.path / MANIFEST
        if not manifest.exists():
            if any(p.name not in ("lock",) for p in self.path.iterdir()):
                self.close()
                raise IndexDirError(f"{self.path}: not empty and not an aaflow commit log; refusing to use it")
            write_durably(manifest, json.dumps({"format": FORMAT, "generation": 0, "meta": meta}).encode())
            return 0, meta
        body = json.loads(manifest.read_text())
        if body.get("format") != FORMAT:
            self.close()
            raise IndexDirError(f"{self.path}: {MANIFEST} is not of format {FORMAT}")
        return int(body["generation"]), body.get("meta", {})

    def _drop_other_generations(self) -> None:
        """Files of a compaction that crashed before (or after) its manifest switch."""
        keep = {MANIFEST, "lock", _snapshot(self.generation), _log(self.generation)}
        for p in self.path.iterdir():
            if p.name not in keep:
                p.unlink()

    def replay(self) -> Iterator[pa.RecordBatch]:
        """Every committed batch in commit order: the snapshot's, then the log's; a torn tail is cut off."""
        snapshot = self.path / _snapshot(self.generation)
        if snapshot.exists():
            yield from pq.ParquetFile(snapshot).iter_batches(batch_size=4096)
        good = 0
        log_path = self.path / _log(self.generation)
        with open(log_path, "rb") as f:
            while (header := f.read(HEADER.size)) and len(header) == HEADER.size:
                size, digest = HEADER.unpack(header)
                payload = f.read(size)
                if len(payload) != size or hashlib.sha256(payload).digest() != digest:
                    break
                good = f.tell()
                self.commits += 1
                yield from pa.ipc.open_stream(payload)
        if good != log_path.stat().st_size:  # a crash mid-append: keep the committed prefix only
            os.truncate(log_path, good)

    def append(self, batch: pa.RecordBatch) -> None:
        """Commit one batch: it is on disk (fsync'd) when this returns."""
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, self.schema) as writer:
            writer.write_batch(batch)
        payload = sink.getvalue()
        self._log.write(HEADER.pack(payload.size, hashlib.sha256(payload).digest()))
        self._log.write(payload)
        self._log.flush()
        os.fsync(self._log.fileno())
        self.commits += 1

    def compact(self, batches: Iterable[pa.RecordBatch]) -> None:
        """Make `batches` (the whole current state) the new snapshot and start an empty log."""
        gen = self.generation + 1

        def write(tmp: Path) -> None:
            with pq.ParquetWriter(tmp, self.schema, write_statistics=False) as writer:
                for batch in batches:
                    writer.write_batch(batch)

        publish_durably(self.path / _snapshot(gen), write)
        (self.path / _log(gen)).touch()
        fsync_dir(self.path)
        write_durably(self.path / MANIFEST,
                       json.dumps({"format": FORMAT, "generation": gen, "meta": self.meta}).encode())
        self._log.close()
        self.generation, self.commits = gen, 0
        self._log = open(self.path / _log(gen), "ab")
        self._drop_other_generations()

    def close(self) -> None:
        """Release the directory (idempotent); everything committed is already on disk."""
        if getattr(self, "_log", None) is not None and not self._log.closed:
            self._log.close()
        unlock(self._lock)
