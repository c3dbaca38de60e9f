"""The pieces of `index`/`aindex` (see indexing.py): plan a batch, embed it, commit it as stock does.

Hashing, in-batch dedup and source ids use langchain_core's own helpers (`_get_document_with_hash`,
`_deduplicate_in_order`, `_get_source_id_assigner`, `_delete`), so keys are stock's by
construction; `commit` is stock's loop body, its calls made through `Calls` so one body serves the
sync and the async API.
"""
from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.indexing import IndexingResult, RecordManager
from langchain_core.indexing.api import (
    _adelete, _deduplicate_in_order, _delete, _get_document_with_hash, _get_source_id_assigner,
)
from langchain_core.indexing.base import DocumentIndex
from langchain_core.vectorstores import InMemoryVectorStore, VectorStore

from aaflow_adapters.langchain.ingest import faiss_add
from aaflow_adapters.langchain.retrieval import embed_matrix, optional_class, sentence_transformers_path

REMOTE_WORKERS = 8  # index batches embedded at once when the model is not in this process


@dataclass
class Result:
    num_added: int = 0
    num_updated: int = 0
    num_skipped: int = 0
    num_deleted: int = 0

    def as_dict(self) -> IndexingResult:
        return {"num_added": self.num_added, "num_updated": self.num_updated, "num_skipped": self.num_skipped,
                "num_deleted": self.num_deleted}


class Destination:
    """Where the documents go and how vectors computed ahead are handed over (None: the store embeds)."""

    def __init__(self, store: VectorStore | DocumentIndex, upsert_kwargs: dict[str, Any] | None,
                 batch_size: int) -> None:
        self.store, self.upsert_kwargs, self.batch_size = store, upsert_kwargs or {}, batch_size
        faiss_cls = optional_class("langchain_community.vectorstores", "FAISS")
        self.kind = "store"
        if not self.upsert_kwargs and faiss_cls is not None and type(store) is faiss_cls:
            self.kind = "faiss"
        elif not self.upsert_kwargs and type(store) is InMemoryVectorStore:
            self.kind = "memory"
        self.embeddings = getattr(store, "embedding_function" if self.kind == "faiss" else "embedding", None)
        if self.kind != "store" and not hasattr(self.embeddings, "embed_documents"):
            self.kind = "store"  # e.g. FAISS built on a plain function: the store embeds

    def default_workers(self) -> int:
        return 1 if self.kind == "store" or sentence_transformers_path(self.embeddings) else REMOTE_WORKERS

    def embed(self, texts: list[str]) -> Any:
        """Vectors as `add_documents` would compute them: one call over the batch's texts."""
        if self.kind == "faiss":
            return embed_matrix(self.embeddings, texts)
        if sentence_transformers_path(self.embeddings) is not None:  # float32 rows, as embed_documents returns
            return embed_matrix(self.embeddings, texts).tolist()
        return self.embeddings.embed_documents(texts)

    def write(self, docs: list[Document], ids: list[str], vectors: Any) -> None:
        if self.kind == "faiss":
            faiss_add(self.store, docs, ids, np.ascontiguousarray(vectors, np.float32), f"documents {ids[0]} ..")
        else:  # InMemoryVectorStore.add_documents with the vectors it would have computed
            for doc, uid, vector in zip(docs, ids, vectors, strict=True):
                self.store.store[uid] = {"id": uid, "vector": vector, "text": doc.page_content,
                                         "metadata": doc.metadata}


@dataclass
class Batch:
    """One `batch_size` slice of the input, hashed, with the guess of what stock will write and its vectors."""

    seq: int
    size: int = 0
    hashed: list[Document] = field(default_factory=list)
    source_ids: list[str | None] = field(default_factory=list)
    guessed: list[int] = field(default_factory=list)  # positions in `hashed`
    vectors: Any = None
    error: BaseException | None = None  # raised when this batch is committed, as stock raises there
    embed_error: BaseException | None = None

    def embed(self, dest: Destination) -> None:
        if self.error is not None or not self.guessed or dest.kind == "store":
            return
        try:
            self.vectors = dest.embed([self.hashed[i].page_content for i in self.guessed])
        except Exception as exc:  # noqa: BLE001 - raised at commit, if stock would embed these documents
            self.embed_error = exc

    def vectors_for(self, positions: list[int], dest: Destination) -> Any:
        if positions == self.guessed and self.embed_error is None and self.vectors is not None:
            return self.vectors
        if positions == self.guessed and self.embed_error is not None:
            raise self.embed_error
        return dest.embed([self.hashed[i].page_content for i in positions])


class Planner:
    """Reads the source and plans each batch on aaflow's source thread (read-only)."""

    def __init__(self, batch_size: int, key_encoder: Any, source_id_key: Any, force_update: bool,
                 dest: Destination, guess: Callable[[Sequence[str]], list[bool]]) -> None:
        self.batch_size, self.key_encoder, self.force_update = batch_size, key_encoder, force_update
        self.assign = _get_source_id_assigner(source_id_key)
        self.dest, self.guess = dest, guess
        self.batches: dict[int, Batch] = {}
        self.written: set[str] = set()  # every key of earlier batches: the record manager has it by then

    def take(self, seq: int) -> Batch:
        return self.batches.pop(seq)

    def plan(self, docs: Iterator[Document]) -> Iterator[Batch]:
        for seq in itertools.count():
            batch = self.batches[seq] = Batch(seq)
            try:
                chunk = list(itertools.islice(docs, self.batch_size))
                if not chunk:
                    del self.batches[seq]
                    return
                self._plan(batch, chunk)
            except Exception as exc:  # noqa: BLE001 - stock raises it after committing the batches before
                batch.error = exc
            yield batch
            if batch.error is not None:
                return

    def _plan(self, batch: Batch, chunk: list[Document]) -> None:
        batch.size = len(chunk)
        batch.hashed = list(_deduplicate_in_order([_get_document_with_hash(d, key_encoder=self.key_encoder)
                                                    for d in chunk]))
        batch.source_ids = [self.assign(d) for d in batch.hashed]
        ids = [str(d.id) for d in batch.hashed]
        if self.dest.kind != "store":
            try:
                present = [False] * len(ids) if self.force_update else self.guess(ids)
            except Exception:  # noqa: BLE001 - only a guess: commit decides on the record manager
                present = [False] * len(ids)
            batch.guessed = [i for i, (uid, p) in enumerate(zip(ids, present, strict=True))
                             if uid not in self.written and (self.force_update or not p)]
        self.written.update(ids)


class Calls:
    """The record manager's and the store's methods, sync or async, behind one awaitable surface."""

    def __init__(self, rm: RecordManager, dest: Destination, *, asynchronous: bool) -> None:
        self.rm, self.dest, self.asynchronous = rm, dest, asynchronous

    async def rm_call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self.asynchronous:
            return await getattr(self.rm, f"a{name}")(*args, **kwargs)
        return getattr(self.rm, name)(*args, **kwargs)

    async def delete(self, ids: list[str]) -> None:
        if self.asynchronous:
            await _adelete(self.dest.store, ids)
        else:
            _delete(self.dest.store, ids)

    async def write(self, batch: Batch, positions: list[int], uids: list[str]) -> None:
        docs = [batch.hashed[i] for i in positions]
        dest = self.dest
        if dest.kind == "store":
            await self._stock_write(docs, uids)
            return
        if self.asynchronous:
            vectors = await asyncio.to_thread(batch.vectors_for, positions, dest)
        else:
            vectors = batch.vectors_for(positions, dest)
        dest.write(docs, uids, vectors)

    async def _stock_write(self, docs: list[Document], uids: list[str]) -> None:
        store, kw = self.dest.store, self.dest.upsert_kwargs
        if isinstance(store, VectorStore):
            if self.asynchronous:
                await store.aadd_documents(docs, ids=uids, batch_size=self.dest.batch_size, **kw)
            else:
                store.add_documents(docs, ids=uids, batch_size=self.dest.batch_size, **kw)
        elif self.asynchronous:
            await store.aupsert(docs, **kw)
        else:
            store.upsert(docs, **kw)



@dataclass
class Committer:
    """Stock `index`'s loop body, batch by batch, then its final cleanup; counts into `result`."""

    calls: Calls
    start: float
    cleanup: str | None
    limit: int
    force_update: bool
    result: Result = field(default_factory=Result)
    scoped: set[str] = field(default_factory=set)

    async def __call__(self, batch: Batch) -> None:
        """One batch, on the record manager as it is now."""
        if batch.error is not None:
            raise batch.error
        result, calls = self.result, self.calls
        result.num_skipped += batch.size - len(batch.hashed)
        if self.cleanup in {"incremental", "scoped_full"}:
            self._check_sources(batch)
        ids = [str(d.id) for d in batch.hashed]
        exists = await calls.rm_call("exists", ids)
        positions, uids, refresh, seen = [], [], [], 0
        for i, (uid, present) in enumerate(zip(ids, exists, strict=False)):
            if present and not self.force_update:
                refresh.append(uid)
                continue
            seen += bool(present)
            positions.append(i)
            uids.append(uid)
        if refresh:
            await calls.rm_call("update", refresh, time_at_least=self.start)
            result.num_skipped += len(refresh)
        if positions:
            await calls.write(batch, positions, uids)
            result.num_added += len(positions) - seen
            result.num_updated += seen
        await calls.rm_call("update", ids, group_ids=batch.source_ids, time_at_least=self.start)
        if self.cleanup == "incremental":
            await self._clean(batch.source_ids)  # type: ignore[arg-type]

    def _check_sources(self, batch: Batch) -> None:
        for source_id, doc in zip(batch.source_ids, batch.hashed, strict=False):
            if source_id is None:
                raise ValueError("Source IDs are required when cleanup mode is incremental or scoped_full. "
                                 f"Document that starts with content: {doc.page_content[:100]} "
                                 "was not assigned as source id.")
            if self.cleanup == "scoped_full":
                self.scoped.add(source_id)

    async def _clean(self, group_ids: Sequence[str] | None) -> None:
        while uids := await self.calls.rm_call("list_keys", group_ids=group_ids, before=self.start, limit=self.limit):
            await self.calls.delete(uids)
            await self.calls.rm_call("delete_keys", uids)
            self.result.num_deleted += len(uids)

    async def finish(self) -> IndexingResult:
        if self.cleanup == "full" or (self.cleanup == "scoped_full" and self.scoped):
            await self._clean(list(self.scoped) if self.cleanup == "scoped_full" else None)
        return self.result.as_dict()
