"""`index` / `aindex`: langchain_core's incremental indexing API with embedding overlapped.

Stock `index` takes one batch of `batch_size` documents at a time: hash, ask the record
manager what exists, embed and write the new ones, update the records, clean up; the next
batch waits for all of it. Here three aaflow stages run side by side:

1. plan (aaflow's source thread): read `docs_source` lazily, hash each batch with stock's own
   helpers, and guess which documents stock will (re)index: not written earlier in this run and
   not in the record manager (a read-only guess; any error there means "embed them all"). The
   guess's `exists` runs on the caller's thread (handed over, caller_thread.py) or loop, as
   every record-manager call does: some record managers are bound to their thread;
2. embed (aaflow map stage, several batches in flight for remote models): the guessed
   documents of a batch in one call through the adapter's embedding path (`embed_matrix`), the
   same call composition `add_documents` makes, so the same vectors;
3. commit (the caller's thread or event loop, batch after batch in input order): exactly stock's
   sequence of record-manager and vector-store calls, with stock's decisions taken on the record
   manager as it is at that moment. When the guess was wrong (incremental cleanup deleted a key
   the guess thought present), the documents stock writes are embedded there and then.

So the record-manager keys, the vector-store contents and the `IndexingResult` are stock's. A
langchain_community `FAISS` store gets the vectors as a float32 matrix; an `InMemoryVectorStore`
gets the model's own rows; any other store (or `upsert_kwargs`, or a `DocumentIndex`) is
written through its own `add_documents`/`upsert`, which embeds there, so only planning overlaps.
An error stops the run where stock's would: the batches before it are committed, nothing after.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Literal

import pyarrow as pa
from langchain_core.document_loaders.base import BaseLoader
from langchain_core.documents import Document
from langchain_core.indexing import IndexingResult, RecordManager
from langchain_core.indexing.base import DocumentIndex
from langchain_core.vectorstores import VectorStore

from aaflow_core import Executor, Resources, Workflow, bind
from aaflow_core.concurrency import drive
from aaflow_core.errors import ConfigError
from aaflow_adapters.langchain.caller_thread import CallerThread
from aaflow_adapters.langchain.index_steps import Batch, Calls, Committer, Destination, Planner

KeyEncoder = Literal["sha1", "sha256", "sha512", "blake2b"] | Callable[[Document], str]
Cleanup = Literal["incremental", "full", "scoped_full"] | None
SEQ = "seq"
_END = object()


def _check(cleanup: Cleanup, source_id_key: Any, destination: Any, asynchronous: bool) -> None:
    """Stock's argument checks, with stock's messages and exception types."""
    if cleanup not in {"incremental", "full", "scoped_full", None}:
        raise ValueError(f"cleanup should be one of 'incremental', 'full', 'scoped_full' or None. Got {cleanup}.")
    if cleanup in {"incremental", "scoped_full"} and source_id_key is None:
        raise ValueError("Source id key is required when cleanup mode is incremental or scoped_full.")
    if isinstance(destination, VectorStore):
        for method in (["adelete", "aadd_documents"] if asynchronous else ["delete", "add_documents"]):
            if not hasattr(destination, method):
                raise ValueError(f"Vectorstore {destination} does not have required method {method}")
        if type(destination).delete == VectorStore.delete and (
                not asynchronous or type(destination).adelete == VectorStore.adelete):
            raise ValueError("Vectorstore has not implemented the adelete or delete method" if asynchronous
                             else "Vectorstore has not implemented the delete method")
    elif not isinstance(destination, DocumentIndex):
        raise TypeError(f"Vectorstore should be either a VectorStore or a DocumentIndex. Got {type(destination)}.")


def _docs(docs_source: Any) -> Iterator[Document]:
    if isinstance(docs_source, BaseLoader):
        try:
            return docs_source.lazy_load()
        except NotImplementedError:
            return iter(docs_source.load())
    return iter(docs_source)


def _workflow(planner: Planner, dest: Destination, workers: int) -> Workflow:
    def embed(batch: pa.RecordBatch) -> pa.RecordBatch:
        for seq in batch.column(SEQ).to_pylist():
            planner.batches[seq].embed(dest)
        return batch

    return Workflow(Resources(threads=workers, queue_capacity=max(4, workers))).map(embed, name="embed",
                                                                                  workers=workers)


def _options(batch_size: int, embed_workers: int | None, dest: Destination) -> int:
    if batch_size <= 0:
        raise ValueError(f"Batch size must be a positive integer, got {batch_size}.")
    if embed_workers is not None and embed_workers < 1:
        raise ConfigError("embed_workers", embed_workers, "must be >= 1 or None")
    return embed_workers or dest.default_workers()


def index(
    docs_source: BaseLoader | Iterable[Document], record_manager: RecordManager,
    vector_store: VectorStore | DocumentIndex, *, batch_size: int = 100, cleanup: Cleanup = None,
    source_id_key: str | Callable[[Document], str] | None = None, cleanup_batch_size: int = 1_000,
    force_update: bool = False, key_encoder: KeyEncoder = "sha1", upsert_kwargs: dict[str, Any] | None = None,
    embed_workers: int | None = None,
) -> IndexingResult:
    """`langchain_core.indexing.index` with the same arguments, record-manager keys, store contents and
    result; embedding overlaps planning and writing. `embed_workers`: batches embedded at once
    (None: 1 for in-process models, 8 for remote ones)."""
    from langchain_core.indexing.api import _warn_about_sha1

    if key_encoder == "sha1":
        _warn_about_sha1()
    _check(cleanup, source_id_key, vector_store, asynchronous=False)
    dest = Destination(vector_store, upsert_kwargs, batch_size)
    workers = _options(batch_size, embed_workers, dest)
    docs = _docs(docs_source)
    commit = Committer(Calls(record_manager, dest, asynchronous=False), record_manager.get_time(), cleanup,
                       cleanup_batch_size, force_update)
    caller = CallerThread()  # the planner's `exists` runs on this thread, as every record-manager call
    planner = Planner(batch_size, key_encoder, source_id_key, force_update, dest,
                      guess=lambda ids: caller.call(record_manager.exists, ids))
    wf = _workflow(planner, dest, workers)
    with Executor(bind(wf.compile(), wf.functions), backend="threads", queue_capacity=max(4, workers)) as ex:
        out = ex.run(_seq_batches(planner.plan(docs)))
        try:
            for batch in caller.iterate(out):
                for seq in batch.column(SEQ).to_pylist():
                    drive(commit(planner.take(seq)))
        finally:
            caller.close()
            out.close()
    return drive(commit.finish())


async def aindex(
    docs_source: BaseLoader | Iterable[Document] | AsyncIterator[Document], record_manager: RecordManager,
    vector_store: VectorStore | DocumentIndex, *, batch_size: int = 100, cleanup: Cleanup = None,
    source_id_key: str | Callable[[Document], str] | None = None, cleanup_batch_size: int = 1_000,
    force_update: bool = False, key_encoder: KeyEncoder = "sha1", upsert_kwargs: dict[str, Any] | None = None,
    embed_workers: int | None = None,
) -> IndexingResult:
    """`langchain_core.indexing.aindex`, as `index`: the record manager's and store's async methods run
    on this loop, embedding on aaflow's threads."""
    from langchain_core.indexing.api import _warn_about_sha1

    if key_encoder == "sha1":
        _warn_about_sha1()
    _check(cleanup, source_id_key, vector_store, asynchronous=True)
    dest = Destination(vector_store, upsert_kwargs, batch_size)
    workers = _options(batch_size, embed_workers, dest)
    loop = asyncio.get_running_loop()
    docs = _async_docs(docs_source, loop)
    commit = Committer(Calls(record_manager, dest, asynchronous=True), await record_manager.aget_time(), cleanup,
                       cleanup_batch_size, force_update)
    planner = Planner(batch_size, key_encoder, source_id_key, force_update, dest,
                      guess=lambda ids: asyncio.run_coroutine_threadsafe(record_manager.aexists(ids), loop).result())
    wf = _workflow(planner, dest, workers)
    with Executor(bind(wf.compile(), wf.functions), backend="threads", queue_capacity=max(4, workers)) as ex:
        out = ex.run(_seq_batches(planner.plan(docs)))
        try:
            while (batch := await loop.run_in_executor(None, next, out, _END)) is not _END:
                for seq in batch.column(SEQ).to_pylist():
                    await commit(planner.take(seq))
        finally:
            await loop.run_in_executor(None, out.close)
    return await commit.finish()


def _seq_batches(batches: Iterator[Batch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        yield pa.record_batch([pa.array([batch.seq], pa.int64())], names=[SEQ])


def _async_docs(docs_source: Any, loop: asyncio.AbstractEventLoop) -> Iterator[Document]:
    """The documents of any source aindex takes, read from aaflow's source thread (async ones on `loop`)."""
    if isinstance(docs_source, BaseLoader):
        try:
            source: Any = docs_source.alazy_load()
        except NotImplementedError:
            source = iter(docs_source.load())
    else:
        source = docs_source
    if not hasattr(source, "__aiter__"):
        yield from source
        return
    iterator = source.__aiter__()
    while True:
        try:
            yield asyncio.run_coroutine_threadsafe(iterator.__anext__(), loop).result()
        except StopAsyncIteration:
            return


