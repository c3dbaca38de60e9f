"""`index_documents`: `vectorstore.add_documents(splitter.split_documents(docs))` as overlapped stages.

Splitting, embedding and upserting run as aaflow executor stages over Arrow batches of chunk
rows, so the splitter works on the next documents while the model embeds the current window
and the store takes the one before. Embeddings travel as a fixed_size_list<float32> column;
a langchain_community FAISS store receives a view of that buffer (no Python float lists).

Bad input: documents are checked before anything is written (stock fails before writing
too); a failure later (a splitter or model error, a bad model answer) leaves the store
holding exactly the chunks of the leading documents `docs[:k]`, and the error says `k`.
"""
from __future__ import annotations

import bisect
import sys
import uuid
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from aaflow_core import AAFlowError, ConfigError, Executor, Resources, Workflow, bind
from aaflow_core.dataplane import embedding_column, embedding_matrix
from aaflow_core.runtime import StageStats
from aaflow_adapters.errors import DuplicateIdError, EmbeddingDimError, StepOutputError, user_error
from aaflow_adapters.langchain.checks import check_document, doc_label
from aaflow_adapters.langchain.lean_openai import embeddings_reason
from aaflow_adapters.langchain.retrieval import embed_matrix

ROW = "row"
REMOTE_WINDOWS = 8  # embedding windows in flight at once when the model is a remote endpoint


def _rows(rows: Iterable[int]) -> pa.RecordBatch:
    return pa.record_batch([pa.array(list(rows), type=pa.int64())], names=[ROW])


def faiss_add(store: Any, chunks: list[Document], ids: list[str], vectors: np.ndarray, where: str) -> None:
    """What `FAISS.add_embeddings` does, with the vectors handed over as they are.

    Checked before the index is touched, so a bad batch never leaves vectors without documents.
    """
    import faiss

    if vectors.shape[1] != store.index.d:
        raise EmbeddingDimError(where, f"vectors have {vectors.shape[1]} values, the FAISS index holds "
                                       f"{store.index.d}-value vectors")
    taken = [i for i in ids if isinstance(store.docstore.search(i), Document)]
    if taken or len(set(ids)) != len(ids):
        raise DuplicateIdError(where, f"chunk ids repeat or are already in the store: {taken or ids}")
    if store._normalize_L2:
        vectors = vectors.copy()  # normalize_L2 works in place on a writable matrix
        faiss.normalize_L2(vectors)
    store.index.add(vectors)
    docs = [Document(id=i, page_content=c.page_content, metadata=c.metadata) for i, c in zip(ids, chunks)]
    store.docstore.add(dict(zip(ids, docs)))
    start = len(store.index_to_docstore_id)
    store.index_to_docstore_id.update({start + j: i for j, i in enumerate(ids)})


class _Ingest:
    """One run: the chunk table, where each document's chunks end, and what the store holds so far.

    The store takes chunks only up to a document boundary, so after a failure it holds
    exactly the chunks of `docs[:done_docs()]`.
    """

    def __init__(self, docs: list[Any], splitter: Any, embeddings: Embeddings, store: VectorStore) -> None:
        self.docs, self.splitter, self.embeddings, self.store = docs, splitter, embeddings, store
        self.chunks: list[Document] = []
        self.doc_end: list[int] = []  # doc_end[d]: one past the last chunk of docs[d]
        self.ids: list[str] = []  # ids of the chunks in the store, in chunk order
        self.pending: list[pa.RecordBatch] = []  # upserted rows held back until their documents are whole
        self.zero_copy = type(store).__name__ == "FAISS"
        self.store_embeds = not self.zero_copy and not hasattr(store, "add_embeddings")

    def done_docs(self) -> int:
        return bisect.bisect_right(self.doc_end, len(self.ids))

    def chunk_name(self, row: int) -> str:
        d = bisect.bisect_right(self.doc_end, row)
        return f"chunk {row} ({doc_label(d, self.docs[d])})"

    def split(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        start = len(self.chunks)
        for d in batch.column(ROW).to_pylist():  # one call per document: each one's chunks are known
            try:
                pieces = self.splitter.split_documents([self.docs[d]])
            except Exception as exc:
                exc.add_note(f"aaflow: splitting {doc_label(d, self.docs[d])}")
                raise
            for j, piece in enumerate(pieces):
                if not isinstance(getattr(piece, "page_content", None), str):
                    raise StepOutputError(f"splitter output for {doc_label(d, self.docs[d])}",
                                          f"piece {j} is a {type(piece).__name__}, expected a Document")
            self.chunks.extend(pieces)
            self.doc_end.append(len(self.chunks))
        return _rows(range(start, len(self.chunks)))

    def embed(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        rows = batch.column(ROW).to_pylist()
        texts = [self.chunks[r].page_content for r in rows]
        matrix = embed_matrix(self.embeddings, texts, name=lambda i: self.chunk_name(rows[i]))
        return batch.append_column(pa.field("embedding", pa.list_(pa.float32(), matrix.shape[1])),
                                   embedding_column(matrix))

    def upsert(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Hold the rows; write everything up to the last document boundary they reach."""
        if batch.num_rows == 0:
            return batch
        self.pending.append(batch)
        whole = bisect.bisect_right(self.doc_end, batch.column(ROW)[-1].as_py() + 1)
        self.commit(self.doc_end[whole - 1] if whole else 0)
        return batch

    def commit(self, upto: int) -> None:
        """Write the held rows below chunk `upto` to the store, in chunk order."""
        while self.pending and len(self.ids) < upto:
            batch = self.pending[0]
            take = min(batch.num_rows, upto - len(self.ids))
            self.write(batch.slice(0, take))
            self.pending[0] = batch.slice(take)
            if self.pending[0].num_rows == 0:
                self.pending.pop(0)

    def write(self, batch: pa.RecordBatch) -> None:
        rows = batch.column(ROW).to_pylist()
        chunks = [self.chunks[r] for r in rows]
        ids = [c.id or str(uuid.uuid4()) for c in chunks]
        texts, metadatas = [c.page_content for c in chunks], [c.metadata for c in chunks]
        if self.store_embeds:
            ids = self.store.add_texts(texts, metadatas, ids=ids)
        elif self.zero_copy:
            where = f"{self.chunk_name(rows[0])} .. {self.chunk_name(rows[-1])}"
            faiss_add(self.store, chunks, ids, embedding_matrix(batch.column("embedding")), where)
        else:  # a store without a bulk buffer API: one visible conversion to Python lists
            vectors = embedding_matrix(batch.column("embedding")).tolist()
            ids = self.store.add_embeddings(list(zip(texts, vectors)), metadatas, ids=ids)  # type: ignore[attr-defined]
        self.ids.extend(ids)


def index_documents(
    docs: Iterable[Document], splitter: Any, embeddings: Embeddings, vectorstore: VectorStore, *,
    docs_per_batch: int = 16, embed_batch_size: int | None = 256, timings: dict[str, StageStats] | None = None,
) -> list[str]:
    """Split, embed and add `docs` to `vectorstore`; returns the ids, in chunk order like `add_documents`.

    The same chunks, ids order and metadata as `vectorstore.add_documents(splitter.split_documents(docs))`.
    `embed_batch_size` chunks are embedded per call (windows fixed by chunk order, so the vectors
    are the same on every run, and within 1e-6 of stock's: a model that pads or sorts per call,
    like sentence-transformers, gives other float32 bits for other call compositions; measured
    max |diff| 1.2e-7 on 57 pydoc chunks). `embed_batch_size=None` embeds all chunks in one call,
    as `add_documents` does, for stock's exact bits (embedding then starts once splitting is done).
    `timings`, if given, receives each stage's busy time.
    If it fails part-way, the store keeps the chunks of `docs[:k]` and the error's note says
    `k`: `index_documents(docs[k:], ...)` adds the rest.
    """
    if docs_per_batch < 1 or (embed_batch_size is not None and embed_batch_size < 1):
        raise ConfigError("docs_per_batch/embed_batch_size", (docs_per_batch, embed_batch_size), "must be >= 1")
    docs = list(docs)
    for i, doc in enumerate(docs):
        check_document(i, doc)
    run = _Ingest(docs, splitter, embeddings, vectorstore)
    workers = REMOTE_WINDOWS if embeddings_reason(embeddings) is None else 1  # remote: windows in flight
    wf = Workflow(Resources(threads=workers, queue_capacity=max(4, workers))).map(run.split, name="split")
    if not run.store_embeds:
        wf.map(run.embed, name="embed", batch_size=embed_batch_size or sys.maxsize, workers=workers)
    wf.map(run.upsert, name="upsert")
    plan = wf.compile()
    source = (_rows(range(i, min(i + docs_per_batch, len(docs)))) for i in range(0, len(docs), docs_per_batch))
    try:
        with Executor(bind(plan, wf.functions), backend="threads", queue_capacity=plan.resources.queue_capacity) as ex:
            for _ in ex.run(source):
                pass
        run.commit(len(run.chunks))
    except Exception as exc:
        err = user_error(exc) if isinstance(exc, AAFlowError) else exc
        k = run.done_docs()
        err.add_note(f"aaflow: the vector store holds the {len(run.ids)} chunks of docs[:{k}] ({k} of {len(docs)} "
                     f"documents) and nothing of docs[{k}:]; index_documents(docs[{k}:], ...) adds the rest")
        raise err
    if timings is not None:
        timings.update(ex.stats)
    return run.ids
