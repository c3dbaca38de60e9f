"""`AAFlowStore`: a LangGraph `BaseStore` whose memory is aaflow's vector index, durable on disk.

Drop-in for `InMemoryStore(index=...)` (same results and order for the same embeddings), with
three differences that are the point of it: concurrent callers' texts are embedded in shared
micro-batches (one `aembed_documents` call per batch, not one call per put or query), vectors
live in FAISS fed from Arrow columns, and with a `path` every batch of writes is committed to
disk before it returns, so reopening the directory gives the same store.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
from langgraph.store.base import (
    BaseStore, GetOp, IndexConfig, ListNamespacesOp, Op, PutOp, Result, SearchOp,
    ensure_embeddings, get_text_at_path, tokenize_path,
)

from aaflow_adapters.errors import user_error
from aaflow_adapters.langgraph.commits import GroupCommit
from aaflow_adapters.langgraph.embedding import EmbedQueue
from aaflow_adapters.langgraph.records import Namespace, Row, encode, row_schema, to_json
from aaflow_adapters.langgraph.table import MemoryTable
from aaflow_core.concurrency import LoopThread
from aaflow_core.errors import AAFlowError, ConfigError, RemoteCallError
from aaflow_core.stores import CommitLog

SNAPSHOT_ROWS = 1024


class StoreClosedError(AAFlowError, RuntimeError):
    """An operation on a store after `close()`."""


@dataclass
class _Put:
    """One put or delete, ready to commit: its JSON value (None: delete), indexed paths and unit vectors."""

    namespace: Namespace
    key: str
    value: str | None
    paths: list[str]
    vectors: np.ndarray


@dataclass
class _Plan:
    """What a batch needs before it touches the state: its puts (last per key wins) and texts to embed."""

    puts: dict[tuple[Namespace, str], PutOp] = field(default_factory=dict)
    values: dict[tuple[Namespace, str], str | None] = field(default_factory=dict)
    fields: dict[tuple[Namespace, str], list[tuple[str, str]]] = field(default_factory=dict)  # (path, text)
    texts: list[str] = field(default_factory=list)


class AAFlowStore(BaseStore):
    """LangGraph store on aaflow's index: coalesced embeddings, FAISS search, atomic on-disk commits.

    `path=None` keeps everything in memory (like `InMemoryStore`). `micro_batch` texts make one
    embedding call, or fewer when no text arrived for `max_wait_ms` or the first one has waited
    `max_delay_ms`; `max_in_flight` calls run at once (1 suits a local model, which uses every
    core per call; raise it for a remote endpoint). The log is folded into a snapshot every
    `compact_every` commits and on `close()`.
    """

    supports_ttl = False

    def __init__(self, path: str | os.PathLike[str] | None = None, *, index: IndexConfig | None = None,
                 micro_batch: int = 64, max_wait_ms: float = 5.0, max_delay_ms: float = 50.0,
                 max_in_flight: int = 1, compact_every: int = 1000) -> None:
        if compact_every < 1:
            raise ConfigError("compact_every", compact_every, "must be >= 1")
        if index and not (isinstance(index.get("dims"), int) and index["dims"] > 0):
            raise ConfigError("index.dims", index.get("dims"), "an index needs its embeddings' dimension (an int > 0)")
        self.index_config: dict[str, Any] | None = dict(index) if index else None
        self.embeddings = ensure_embeddings(index.get("embed")) if index else None
        dims = int(index["dims"]) if index else None
        if self.index_config is not None:
            self.index_config["__tokenized_fields"] = [
                (p, tokenize_path(p)) if p != "$" else (p, p) for p in (self.index_config.get("fields") or ["$"])]
        self._dims = dims
        self._table = MemoryTable(dims)
        self._lock = threading.Lock()
        self._compact_every = compact_every
        self._log = self._open(path, dims) if path is not None else None
        self._loop = LoopThread("aaflow-memory")
        self._loop.__enter__()
        self._group = GroupCommit(self._loop, self._write) if self._log is not None else None
        self._embed = (EmbedQueue(self.embeddings, dims, self._loop, micro_batch=micro_batch, max_wait_ms=max_wait_ms,
                                  max_delay_ms=max_delay_ms, max_in_flight=max_in_flight)
                       if self.embeddings is not None and dims else None)

    def _open(self, path: str | os.PathLike[str], dims: int | None) -> CommitLog:
        log = CommitLog(path, row_schema(dims or 1), {"dims": dims})
        if log.meta.get("dims") != dims:
            log.close()
            raise ConfigError("index.dims", dims, f"{path} holds a store of {log.meta.get('dims')} dims")
        for batch in log.replay():
            self._table.apply(batch)
        return log

    @property
    def embedding_calls(self) -> int:
        """Embedding calls made so far: one per micro-batch of texts."""
        return self._embed.calls if self._embed else 0

    @property
    def embedding_batch_sizes(self) -> list[int]:
        """Texts per embedding call, in call order."""
        return list(self._embed.batch_sizes) if self._embed else []

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        plan = self._plan(ops)
        try:
            vectors = self._embed.embed(plan.texts) if self._embed and plan.texts else None
        except RemoteCallError as err:
            raise user_error(err) from None
        results, part = self._read(ops, plan, vectors)
        if part:
            self._group.commit(part) if self._group else self._write([part])
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        plan = self._plan(ops)
        try:
            vectors = await self._embed.aembed(plan.texts) if self._embed and plan.texts else None
        except RemoteCallError as err:
            raise user_error(err) from None
        results, part = self._read(ops, plan, vectors)
        if part:
            await self._group.acommit(part) if self._group else self._write([part])
        return results

    def _plan(self, ops: list[Op]) -> _Plan:
        if self._loop is None:
            raise StoreClosedError("this AAFlowStore is closed; open the directory again to use it")
        plan = _Plan()
        texts: dict[str, None] = {}
        for op in ops:
            if isinstance(op, SearchOp):
                if op.query and self._embed:
                    texts[op.query] = None
            elif isinstance(op, PutOp):
                where = (tuple(op.namespace), op.key)
                plan.puts[where] = op
                plan.values[where] = None if op.value is None else to_json(where[0], op.key, dict(op.value))
                plan.fields[where] = self._fields(op)
                texts.update((text, None) for _, text in plan.fields[where])
            elif not isinstance(op, (GetOp, ListNamespacesOp)):
                raise ValueError(f"Unknown operation type: {type(op)}")
        plan.texts = list(texts)
        return plan

    def _fields(self, op: PutOp) -> list[tuple[str, str]]:
        """(path, text) to embed for a put, as `InMemoryStore` extracts them ("path.i" for list elements)."""
        if op.value is None or op.index is False or self._embed is None or self.index_config is None:
            return []
        paths = (self.index_config["__tokenized_fields"] if op.index is None
                 else [(p, tokenize_path(p)) for p in op.index])
        out = []
        for path, tokens in paths:
            found = get_text_at_path(op.value, tokens)
            out.extend([(f"{path}.{i}", t) for i, t in enumerate(found)] if len(found) > 1
                       else [(path, t) for t in found])
        return out

    def _read(self, ops: list[Op], plan: _Plan, vectors: np.ndarray | None) -> tuple[list[Result], list[_Put]]:
        """Results of the reads, on the state before this batch's writes (as in `InMemoryStore`), and the writes."""
        vector_of = dict(zip(plan.texts, vectors)) if vectors is not None else {}
        results: list[Result] = []
        with self._lock:
            for op in ops:
                if isinstance(op, GetOp):
                    results.append(self._table.get(tuple(op.namespace), op.key))
                elif isinstance(op, SearchOp):
                    results.append(self._table.search(op, vector_of.get(op.query) if op.query else None))
                elif isinstance(op, ListNamespacesOp):
                    results.append(self._table.list_namespaces(op))
                else:
                    results.append(None)
        dims = self._dims or 1
        part = []
        for where, found in plan.fields.items():
            vectors_of_put = np.stack([vector_of[t] for _, t in found]) if found else np.zeros((0, dims), np.float32)
            part.append(_Put(where[0], where[1], plan.values[where], [p for p, _ in found], vectors_of_put))
        return results, part

    def _write(self, parts: list[list[_Put]]) -> None:
        """One commit for the puts of any number of batches, in order: log append (fsync), then the state."""
        now = datetime.now(timezone.utc)
        with self._lock:
            puts = [put for part in parts for put in part]
            rows = [Row(p.namespace, p.key, None, self._table.created_at(p.namespace, p.key, now), now, p.paths,
                        p.vectors) for p in puts]
            batch = encode(rows, self._dims or 1, [p.value for p in puts])
            if self._log is not None:
                self._log.append(batch)  # durable before the state changes: a failed write changes nothing
            self._table.apply(batch)
            if self._log is not None and self._log.commits >= self._compact_every:
                self._compact()

    def _compact(self) -> None:
        assert self._log is not None
        rows = list(self._table.rows())
        chunks = [rows[i: i + SNAPSHOT_ROWS] for i in range(0, len(rows), SNAPSHOT_ROWS)]
        self._log.compact(encode(chunk, self._dims or 1,
                                 [None if r.value is None else to_json(r.namespace, r.key, r.value) for r in chunk])
                          for chunk in chunks)

    def close(self) -> None:
        """Fold the log into a snapshot, release the directory and stop the store's loop (idempotent)."""
        with self._lock:
            if self._log is not None:
                if self._log.commits:
                    self._compact()
                self._log.close()
                self._log = None
        if self._embed is not None:
            self._embed.close()
            self._embed = None
        if self._loop is not None:
            self._loop.__exit__(None, None, None)
            self._loop = None

    def __enter__(self) -> "AAFlowStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
