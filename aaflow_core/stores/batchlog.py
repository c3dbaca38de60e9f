"""A keyed batch checkpoint: durable Parquet parts of finished items plus a journal, resumed strictly.

The native ingest's journal (journal.py) keeps a prefix of parts in row order; a batch of
independent items (a LangChain `batch`, a LlamaIndex embedding pass) finishes out of order, so
here every part row carries its item's position and key, and a later row for a position
replaces an earlier one (a failure retried). Commit order is the same as journal.py's: the
part is written to a temporary name, fsynced, renamed, the directory fsynced, and only then
does the journal name it with its sha256. A kill at any instant leaves complete parts.

Recovery tells a crash from damage: a torn last journal line or a part no line names is what
a kill leaves, and is dropped; a named part that is missing, changed or unreadable, or a
header for another job, raises CheckpointError and touches nothing.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from aaflow_core.errors import CheckpointError
from aaflow_core.stores.journal import (
    JOURNAL_FILE, LOCK_FILE, PART_FILE, append_line_durably, file_sha256, lock_exclusively, publish_durably, unlock,
    write_durably,
)

FORMAT = "aaflow-batchlog/1"


class BatchLog:
    """The committed parts of one batch job in `work`; one process at a time (a file lock).

    `header` says what job this is; resuming a checkpoint whose header differs raises
    CheckpointError with `.differs` (the header keys that differ) and `.found` (its header).
    """

    def __init__(self, work: Path, header: dict[str, Any], sidecars: dict[str, bytes] | None = None) -> None:
        """`sidecars`: files written once with a new checkpoint (before its header), read back with `sidecar`."""
        self.work = Path(work)
        self.header = {"format": FORMAT, **header, "sidecars": sorted(sidecars or {})}
        self._sidecars = dict(sidecars or {})
        self.parts: list[dict[str, Any]] = []
        if not (self.work / JOURNAL_FILE).exists():
            self._refuse_foreign()
        self.work.mkdir(parents=True, exist_ok=True)
        self._lock = lock_exclusively(self.work / LOCK_FILE,
                                      CheckpointError(f"{self.work}: another process is using this checkpoint"))
        try:
            self.resumed = (self.work / JOURNAL_FILE).exists()
            if self.resumed:
                self._recover()
            else:
                self._start()
        except BaseException:
            self.close()
            raise

    @property
    def journal(self) -> Path:
        return self.work / JOURNAL_FILE

    def _refuse_foreign(self) -> None:
        """A new checkpoint goes only where nothing but a killed run's leftovers is (never into a user's folder)."""
        if not self.work.is_dir():
            return
        ours = {LOCK_FILE, *self._sidecars}
        foreign = sorted(p.name for p in self.work.iterdir()
                         if p.name not in ours and not p.name.startswith("part-") and not p.name.endswith(".tmp"))
        if foreign:
            raise CheckpointError(f"{self.work}: not a checkpoint and not empty (holds {', '.join(foreign[:3])}); "
                                  "give a new or empty directory")

    def _start(self) -> None:
        for stale in self.work.glob("part-*"):
            stale.unlink()
        for name, data in self._sidecars.items():
            write_durably(self.work / name, data)
        write_durably(self.journal, (json.dumps(self.header, sort_keys=True) + "\n").encode())

    def _entries(self) -> list[dict[str, Any]]:
        text = self.journal.read_bytes().decode("utf-8", errors="replace")
        lines = text.split("\n")[:-1]  # after the last newline: a torn write, if anything
        entries = []
        for n, line in enumerate(lines, 1):
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                raise CheckpointError(f"{self.journal}: line {n} is not JSON; the checkpoint is damaged "
                                      f"(delete {self.work} to start over)") from None
        if not entries:
            raise CheckpointError(f"{self.journal}: no header line; the checkpoint is damaged "
                                  f"(delete {self.work} to start over)")
        return entries

    def _recover(self) -> None:
        entries = self._entries()
        found = entries[0]
        if found != self.header:
            differs = sorted(k for k in set(found) | set(self.header) if found.get(k) != self.header.get(k))
            err = CheckpointError(f"{self.work}: the checkpoint was made for another job "
                                  f"(differs in {', '.join(differs)}); nothing was changed")
            err.differs, err.found = differs, found  # type: ignore[attr-defined]
            raise err
        for k, entry in enumerate(entries[1:]):
            path = self.work / PART_FILE.format(k)
            if entry.get("index") != k:
                raise CheckpointError(f"{self.journal}: entry {k + 1} names part {entry.get('index')}, expected "
                                      f"{k}; the checkpoint is damaged (delete {self.work} to start over)")
            if not path.exists():
                raise CheckpointError(f"{path}: committed part is missing; the checkpoint is damaged "
                                      f"(delete {self.work} to start over)")
            if file_sha256(path) != entry.get("sha256"):
                raise CheckpointError(f"{path}: committed part changed or was truncated (sha256 differs from the "
                                      f"journal's); the checkpoint is damaged (delete {self.work} to start over)")
            self.parts.append(entry)
        keep = {PART_FILE.format(k) for k in range(len(self.parts))}
        for stale in self.work.glob("part-*"):  # a kill between a part's rename and its journal line
            if stale.name not in keep:
                stale.unlink()
        lines = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries)
        if self.journal.read_bytes() != lines.encode():  # drop a torn last line before appending again
            write_durably(self.journal, lines.encode())

    def sidecar(self, name: str) -> bytes:
        """A file written with the checkpoint (CheckpointError if it is gone)."""
        try:
            return (self.work / name).read_bytes()
        except OSError as exc:
            raise CheckpointError(f"{self.work / name}: cannot be read ({exc}); the checkpoint is damaged "
                                  f"(delete {self.work} to start over)") from exc

    def commit(self, table: pa.Table) -> None:
        """Make `table` durable as the next part; only then does the journal name it."""
        index = len(self.parts)
        path = self.work / PART_FILE.format(index)
        publish_durably(path, lambda tmp: pq.write_table(table, tmp))
        entry = {"index": index, "rows": table.num_rows, "sha256": file_sha256(path)}
        append_line_durably(self.journal, entry)
        self.parts.append(entry)

    def tables(self) -> Iterator[pa.Table]:
        """Every committed part, in commit order; CheckpointError naming a part Parquet cannot read."""
        for k in range(len(self.parts)):
            path = self.work / PART_FILE.format(k)
            try:
                yield pq.read_table(path)
            except (OSError, pa.ArrowException) as exc:
                raise CheckpointError(f"{path}: committed part cannot be read ({exc}); the checkpoint is "
                                      f"damaged (delete {self.work} to start over)") from exc

    def close(self) -> None:
        unlock(self._lock)

    def __enter__(self) -> "BatchLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
