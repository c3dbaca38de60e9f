"""Chunk: documents -> chunks by recursive character splitting, with content-derived chunk ids.

The splitter follows the semantics users know from LangChain's RecursiveCharacterTextSplitter
(separators tried in order, separators kept at the start of the following piece, pieces merged
up to `chunk_size` with up to `chunk_overlap` characters carried over, whitespace stripped),
so the same text gives the same chunks on both sides of a side-by-side comparison.
"""
from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Sequence

import pyarrow as pa

from aaflow_core.dataplane.schemas import CHUNKS
from aaflow_core.errors import ConfigError
from aaflow_core.operators.base import Operator

DEFAULT_SEPARATORS = ("\n\n", "\n", " ", "")


def chunk_id_for(doc_id: str, seq: int, text: str) -> str:
    """Content-derived id: the same document text always yields the same chunk ids."""
    return hashlib.sha256(f"{doc_id}\x1f{seq}\x1f{text}".encode()).hexdigest()[:32]


class RecursiveCharacterChunker:
    def __init__(self, chunk_size: int = 1000, chunk_overlap: int = 100,
                 separators: Sequence[str] = DEFAULT_SEPARATORS) -> None:
        if chunk_size < 1:
            raise ConfigError("chunk_size", chunk_size, "must be >= 1")
        if not 0 <= chunk_overlap < chunk_size:
            raise ConfigError("chunk_overlap", chunk_overlap, f"must be >= 0 and < chunk_size ({chunk_size})")
        self.size = chunk_size
        self.overlap = chunk_overlap
        self.separators = tuple(separators)

    def split(self, text: str) -> list[str]:
        return self._split(text, self.separators)

    def _split(self, text: str, separators: tuple[str, ...]) -> list[str]:
        level = next((i for i, sep in enumerate(separators) if sep == "" or sep in text), len(separators) - 1)
        sep, finer = separators[level], separators[level + 1 :]
        out: list[str] = []
        small: list[str] = []
        for piece in _pieces(text, sep):
            if len(piece) < self.size:
                small.append(piece)
                continue
            out.extend(self._merge(small))
            small = []
            out.extend(self._split(piece, finer) if finer else [piece])
        out.extend(self._merge(small))
        return out

    def _merge(self, pieces: list[str]) -> list[str]:
        """Greedily pack pieces into chunks <= size; each new chunk starts with <= overlap chars of the last."""
        chunks: list[str] = []
        window: deque[str] = deque()
        total = 0
        for piece in pieces:
            if window and total + len(piece) > self.size:
                _emit(window, chunks)
                while window and (total > self.overlap or total + len(piece) > self.size):
                    total -= len(window.popleft())
            window.append(piece)
            total += len(piece)
        _emit(window, chunks)
        return chunks


def _pieces(text: str, sep: str) -> list[str]:
    """Split on `sep`, keeping each separator at the start of the piece that follows it."""
    if sep == "":
        return list(text)
    parts = re.split(f"({re.escape(sep)})", text)
    pieces = [parts[0]] + [parts[i] + parts[i + 1] for i in range(1, len(parts) - 1, 2)]
    return [p for p in pieces if p]


def _emit(window: deque[str], chunks: list[str]) -> None:
    joined = "".join(window).strip()
    if joined:
        chunks.append(joined)


class ChunkOperator(Operator):
    kind = "chunk"
    reads = ("doc_id", "source", "text", "metadata")

    def __init__(self, name: str | None = None, *, chunk_size: int = 1000, chunk_overlap: int = 100) -> None:
        super().__init__(name)
        self.chunker = RecursiveCharacterChunker(chunk_size, chunk_overlap)

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        self.check_input(batch)
        cols: dict[str, list] = {name: [] for name in CHUNKS.names}
        for doc_id, source, text, meta in zip(*(batch.column(c).to_pylist() for c in self.reads)):
            for seq, piece in enumerate(self.chunker.split(text)):
                cols["doc_id"].append(doc_id)
                cols["chunk_id"].append(chunk_id_for(doc_id, seq, piece))
                cols["seq"].append(seq)
                cols["source"].append(source)
                cols["text"].append(piece)
                cols["metadata"].append(meta)
        return pa.RecordBatch.from_pydict(cols, schema=CHUNKS)
