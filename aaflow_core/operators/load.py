"""Load: file paths -> documents. Bad files are skipped with a reason naming them, never fatal."""
from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pyarrow as pa

from aaflow_core.dataplane.schemas import DOCUMENTS
from aaflow_core.errors import SkippedItem
from aaflow_core.operators.base import Operator

SNIFF_BYTES = 8192


def doc_id_for(source: str) -> str:
    """Deterministic document id from its source name (stable across runs and machines)."""
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def read_text(path: Path, max_bytes: int) -> str:
    """Read a UTF-8 text file or raise ValueError saying exactly why it is not one."""
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"file too large ({size} bytes > limit {max_bytes})")
    data = path.read_bytes()
    if not data.strip():
        raise ValueError("empty file")
    if b"\x00" in data[:SNIFF_BYTES]:
        raise ValueError("binary file (NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid UTF-8 (byte {exc.start})") from None


class LoadOperator(Operator):
    kind = "load"
    reads = ("path", "source")

    def __init__(self, name: str | None = None, *, max_file_bytes: int = 64 * 2**20) -> None:
        super().__init__(name)
        self.max_file_bytes = max_file_bytes
        self.skipped: list[SkippedItem] = []
        self._lock = threading.Lock()

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        self.check_input(batch)
        ids, sources, texts, metas = [], [], [], []
        for path, source in zip(batch.column("path").to_pylist(), batch.column("source").to_pylist()):
            try:
                text = read_text(Path(path), self.max_file_bytes)
            except (OSError, ValueError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                with self._lock:
                    self.skipped.append(SkippedItem(path, reason))
                continue
            ids.append(doc_id_for(source))
            sources.append(source)
            texts.append(text)
            metas.append(json.dumps({"source": source}))
        return pa.RecordBatch.from_arrays(
            [pa.array(ids, pa.string()), pa.array(sources, pa.string()), pa.array(texts, pa.large_string()),
             pa.array(metas, pa.string())],
            schema=DOCUMENTS,
        )
