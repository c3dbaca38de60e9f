"""`index_documents`: `vectorstore.add_documents(splitter.split_documents(docs))` as overlapped stages.

Splitting, embedding and upserting run as aaflow executor stages over Arrow batches of chunk
rows, so the splitter works on the next documents while the model embeds the current window
and the store takes the one before. Embeddings travel as a fixed_size_list<float32> column;
a langchain_community FAISS store receives a view of that buffer (no Python float lists).
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from aaflow_core import ConfigError, Executor, InputError, Resources, Workflow, bind
from aaflow_core.dataplane import embedding_column, embedding_matrix
from aaflow_core.runtime import StageStats
from aaflow_adapters.langchain.retrieval import embed_matrix

ROW = "row"


def _rows(rows: Iterable[int]) -> pa.RecordBatch:
    return pa.record_batch([pa.array(list(rows), type=pa.int64())], names=[ROW])


def _faiss_add(store: Any, chunks: list[Document], ids: list[str], vectors: np.ndarray) -> None:
    """What `FAISS.add_embeddings` does, with the vectors handed over as they are."""
    import faiss

    if store._normalize_L2:
        vectors = vectors.copy()  # normalize_L2 works in place on a writable matrix
        faiss.normalize_L2(vectors)
    store.index.add(vectors)
    docs = [Document(id=i, page_content=c.page_content, metadata=c.metadata) for i, c in zip(ids, chunks)]
    store.docstore.add(dict(zip(ids, docs)))
    start = len(store.index_to_docstore_id)
    store.index_to_docstore_id.update({start + j: i for j, i in enumerate(ids)})


class _Ingest:
    """The state of one run: the chunk table and the ids handed out, in chunk order."""

    def __init__(self, docs: list[Document], splitter: Any, embeddings: Embeddings, store: VectorStore) -> None:
        self.docs, self.splitter, self.embeddings, self.store = docs, splitter, embeddings, store
        self.chunks: list[Document] = []
        self.ids: list[str] = []
        self.zero_copy = type(store).__name__ == "FAISS"
        self.store_embeds = not self.zero_copy and not hasattr(store, "add_embeddings")

    def split(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        pieces = self.splitter.split_documents([self.docs[r] for r in batch.column(ROW).to_pylist()])
        start = len(self.chunks)
        self.chunks.extend(pieces)
        return _rows(range(start, start + len(pieces)))

    def embed(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        texts = [self.chunks[r].page_content for r in batch.column(ROW).to_pylist()]
        matrix = embed_matrix(self.embeddings, texts)
        return batch.append_column(pa.field("embedding", pa.list_(pa.float32(), matrix.shape[1])),
                                   embedding_column(matrix))

    def upsert(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        chunks = [self.chunks[r] for r in batch.column(ROW).to_pylist()]
        ids = [c.id or str(uuid.uuid4()) for c in chunks]
        texts, metadatas = [c.page_content for c in chunks], [c.metadata for c in chunks]
        if self.store_embeds:
            ids = self.store.add_texts(texts, metadatas, ids=ids)
        elif self.zero_copy:
            _faiss_add(self.store, chunks, ids, embedding_matrix(batch.column("embedding")))
        else:  # a store without a bulk buffer API: one visible conversion to Python lists
            vectors = embedding_matrix(batch.column("embedding")).tolist()
            ids = self.store.add_embeddings(list(zip(texts, vectors)), metadatas, ids=ids)  # type: ignore[attr-defined]
        self.ids.extend(ids)
        return batch


def index_documents(
    docs: Iterable[Document], splitter: Any, embeddings: Embeddings, vectorstore: VectorStore, *,
    docs_per_batch: int = 16, embed_batch_size: int = 256, timings: dict[str, StageStats] | None = None,
) -> list[str]:
    """Split, embed and add `docs` to `vectorstore`; returns the ids, in chunk order like `add_documents`.

    `embed_batch_size` chunks are embedded per call (windows fixed by chunk order, so the
    vectors are the same on every run); `timings`, if given, receives each stage's busy time.
    """
    if docs_per_batch < 1 or embed_batch_size < 1:
        raise ConfigError("docs_per_batch/embed_batch_size", (docs_per_batch, embed_batch_size), "must be >= 1")
    docs = list(docs)
    for i, doc in enumerate(docs):
        if not isinstance(doc, Document):
            raise InputError(f"docs[{i}]", f"is a {type(doc).__name__}, expected a langchain Document")
    run = _Ingest(docs, splitter, embeddings, vectorstore)
    wf = Workflow(Resources(threads=1, queue_capacity=4)).map(run.split, name="split")
    if not run.store_embeds:
        wf.map(run.embed, name="embed", batch_size=embed_batch_size)
    wf.map(run.upsert, name="upsert")
    plan = wf.compile()
    source = (_rows(range(i, min(i + docs_per_batch, len(docs)))) for i in range(0, len(docs), docs_per_batch))
    with Executor(bind(plan, wf.functions), backend="threads", queue_capacity=plan.resources.queue_capacity) as ex:
        for _ in ex.run(source):
            pass
    if timings is not None:
        timings.update(ex.stats)
    return run.ids
