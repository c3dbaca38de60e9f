"""Batched retrieval: one embedding call and one FAISS search per micro-batch of queries.

Stock `VectorStoreRetriever.batch` embeds and searches one query at a time. Here the queries
of a micro-batch are embedded together (for embeddings whose `embed_query` is the
`embed_documents` of one text) and searched with one `index.search` call, then mapped to the
same docstore documents the stock path returns. Callback events are those of
`BaseRetriever.invoke`, fired per input.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from langchain_core.callbacks import CallbackManager, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config
from langchain_core.vectorstores import VectorStoreRetriever

from aaflow_adapters.langchain.checks import as_matrix
from aaflow_adapters.langchain.lean_openai import embed_lean
from aaflow_adapters.langchain.stages import RunContext, Stage

# Embeddings whose embed_query(t) is by definition embed_documents([t])[0].
_QUERY_IS_DOCUMENT = ("OpenAIEmbeddings", "AzureOpenAIEmbeddings", "HuggingFaceEmbeddings")


def embed_matrix(embeddings: Embeddings, texts: list[str], *, query: bool = False,
                 name: Callable[[int], str] = lambda i: f"text {i}") -> np.ndarray:
    """A C-contiguous float32 (n, dim) matrix for `texts`, with the model's own numerics.

    HuggingFaceEmbeddings is asked for its NumPy output directly (its `embed_documents` would
    turn it into Python float lists); anything else goes through its public API once, and an
    answer that is not one vector per text raises EmbeddingOutputError naming `name(i)`.
    """
    if (lean := embed_lean(embeddings, texts, name)) is not None:  # OpenAIEmbeddings: requests all in flight
        return lean
    if type(embeddings).__name__ == "HuggingFaceEmbeddings" and not getattr(embeddings, "multi_process", True):
        kwargs = embeddings.encode_kwargs  # type: ignore[attr-defined]
        if query and embeddings.query_encode_kwargs:  # type: ignore[attr-defined]
            kwargs = embeddings.query_encode_kwargs  # type: ignore[attr-defined]
        clean = [t.replace("\n", " ") for t in texts]
        out = embeddings._client.encode(  # type: ignore[attr-defined]
            clean, show_progress_bar=embeddings.show_progress, **kwargs  # type: ignore[attr-defined]
        )
        return np.ascontiguousarray(out, dtype=np.float32)
    if query and not _query_is_document(embeddings):
        rows = [embeddings.embed_query(t) for t in texts]
    else:
        rows = embeddings.embed_documents(texts)
    return as_matrix(rows, len(texts), type(embeddings).__name__, name)


def _query_is_document(embeddings: Embeddings) -> bool:
    return isinstance(embeddings, DeterministicFakeEmbedding) or type(embeddings).__name__ in _QUERY_IS_DOCUMENT


def batchable(retriever: object) -> bool:
    """Plain similarity search on a langchain_community FAISS store with an Embeddings object."""
    if not isinstance(retriever, VectorStoreRetriever) or retriever.search_type != "similarity":
        return False
    store = retriever.vectorstore
    return (type(store).__name__ == "FAISS" and isinstance(getattr(store, "embedding_function", None), Embeddings)
            and retriever.search_kwargs.get("filter") is None)


def faiss_search(store: Any, queries: np.ndarray, *, k: int = 4, fetch_k: int = 20, **kwargs: Any) -> list[list[Document]]:
    """`FAISS.similarity_search_by_vector` for many queries with one `index.search` call."""
    import faiss

    if store._normalize_L2:
        queries = queries.copy()  # normalize_L2 works in place; the caller's matrix stays as it was
        faiss.normalize_L2(queries)
    scores, ids = store.index.search(queries, k)
    threshold = kwargs.get("score_threshold")
    keep_high = store.distance_strategy.name in ("MAX_INNER_PRODUCT", "JACCARD")
    out = []
    for row_scores, row_ids in zip(scores, ids):
        docs = []
        for score, i in zip(row_scores, row_ids):
            if i == -1:
                continue
            doc = store.docstore.search(store.index_to_docstore_id[i])
            if not isinstance(doc, Document):
                raise ValueError(f"Could not find document for id {store.index_to_docstore_id[i]}, got {doc}")
            if threshold is None or (score >= threshold if keep_high else score <= threshold):
                docs.append(doc)
        out.append(docs[:k])
    return out


@dataclass
class RetrieverStage(Stage):
    """A FAISS `VectorStoreRetriever`: queries embedded together and searched together."""

    retriever: VectorStoreRetriever

    def __post_init__(self) -> None:
        self.label = type(self.retriever).__name__
        # micro-batches are fixed by input order, so two of them embedding at once change no bits
        self.workers = max(2, os.cpu_count() or 1)

    def _start(self, query: Any, config: RunnableConfig) -> CallbackManagerForRetrieverRun:
        config = ensure_config(config)
        r = self.retriever
        manager = CallbackManager.configure(
            config.get("callbacks"), None, verbose=False, inheritable_tags=config.get("tags"), local_tags=r.tags,
            inheritable_metadata={**(config.get("metadata") or {}), **r._get_ls_params()},
            local_metadata=r.metadata,
        )
        return manager.on_retriever_start(None, query, name=config.get("run_name") or r.get_name(), run_id=None)

    def run(self, values: list[Any], configs: list[RunnableConfig], rt: RunContext) -> list[Any]:
        out: list[Any] = [None] * len(values)
        texts = [i for i, v in enumerate(values) if isinstance(v, str)]
        for i, v in enumerate(values):
            if not isinstance(v, str):  # the stock path decides what error a non-string gets
                try:
                    out[i] = self.retriever.invoke(v, configs[i])
                except Exception as exc:  # noqa: BLE001
                    out[i] = exc
        runs = {i: self._start(values[i], configs[i]) for i in texts}
        try:
            store = self.retriever.vectorstore
            queries = [values[i] for i in texts]
            matrix = embed_matrix(store.embedding_function, queries, query=True, name=lambda j: f"query {queries[j]!r}")
            found = faiss_search(store, matrix, **self.retriever.search_kwargs) if texts else []
        except Exception as exc:  # noqa: BLE001 - the whole micro-batch failed: every query reports it
            for i in texts:
                runs[i].on_retriever_error(exc)
                out[i] = exc
            return out
        for i, docs in zip(texts, found, strict=True):
            runs[i].on_retriever_end(docs)
            out[i] = docs
        return out
