"""Batched retrieval: one embedding call and one FAISS search per micro-batch of queries.

Stock `VectorStoreRetriever.batch` embeds and searches one query at a time. Here the queries
of a micro-batch are embedded together (for embeddings whose `embed_query` is the
`embed_documents` of one text) and searched with one `index.search` call, then mapped to the
same docstore documents the stock path returns. Callback events are those of
`BaseRetriever.invoke`, fired per input.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from langchain_core.callbacks import CallbackManager, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config
from langchain_core.vectorstores import VectorStoreRetriever

from aaflow_adapters.langchain.checks import as_matrix
from aaflow_adapters.langchain.embeddings import AAFlowEmbeddings
from aaflow_adapters.langchain.lean_openai import embed_lean
from aaflow_adapters.langchain.stages import RunContext, Stage


@lru_cache(maxsize=None)
def optional_class(module: str, name: str) -> type | None:
    """A class from an optional package, or None when that package is not installed."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def _unchanged(embeddings: Embeddings, cls: type | None, methods: tuple[str, ...]) -> bool:
    """`embeddings` is a `cls` whose embedding methods are `cls`'s own (a subclass may override them)."""
    return cls is not None and isinstance(embeddings, cls) and all(
        getattr(type(embeddings), m, None) is getattr(cls, m, None) for m in methods)


@dataclass(frozen=True)
class _SentenceTransformers:
    """Where a HuggingFaceEmbeddings class keeps its SentenceTransformer and its encode kwargs."""

    client: str
    query_kwargs: bool  # has query_encode_kwargs (langchain_huggingface) or not (langchain_community)

    def encode(self, embeddings: Any, texts: list[str], query: bool) -> np.ndarray:
        kwargs = embeddings.encode_kwargs
        if query and self.query_kwargs and embeddings.query_encode_kwargs:
            kwargs = embeddings.query_encode_kwargs
        clean = [t.replace("\n", " ") for t in texts]
        out = getattr(embeddings, self.client).encode(clean, show_progress_bar=embeddings.show_progress, **kwargs)
        return np.ascontiguousarray(out, dtype=np.float32)


_HF_METHODS = ("embed_documents", "embed_query", "_embed")


def sentence_transformers_path(embeddings: Embeddings) -> _SentenceTransformers | None:
    """The NumPy path for the two HuggingFaceEmbeddings classes, matched by class (not by name)."""
    if getattr(embeddings, "multi_process", True):
        return None
    if _unchanged(embeddings, optional_class("langchain_huggingface", "HuggingFaceEmbeddings"), _HF_METHODS):
        return _SentenceTransformers("_client", query_kwargs=True)
    if _unchanged(embeddings, optional_class("langchain_community.embeddings", "HuggingFaceEmbeddings"), _HF_METHODS):
        return _SentenceTransformers("client", query_kwargs=False)
    return None


def embed_matrix(embeddings: Embeddings, texts: list[str], *, query: bool = False,
                 name: Callable[[int], str] = lambda i: f"text {i}") -> np.ndarray:
    """A C-contiguous float32 (n, dim) matrix for `texts`, with the model's own numerics.

    langchain_huggingface's and langchain_community's HuggingFaceEmbeddings are asked for their
    NumPy output directly (their `embed_documents` would turn it into Python float lists), with
    exactly the encode call `embed_documents` makes; anything else goes through its public API
    once, and an answer that is not one vector per text raises EmbeddingOutputError naming `name(i)`.
    """
    if (lean := embed_lean(embeddings, texts, name)) is not None:  # OpenAIEmbeddings: requests all in flight
        return lean
    fast = sentence_transformers_path(embeddings)
    if fast is not None:
        return fast.encode(embeddings, texts, query)
    if type(embeddings) is AAFlowEmbeddings:  # aaflow's own engines: the matrix, no float lists
        return embeddings.embed_matrix(texts)
    if query and not _query_is_document(embeddings):
        rows = [embeddings.embed_query(t) for t in texts]
    else:
        rows = embeddings.embed_documents(texts)
    return as_matrix(rows, len(texts), type(embeddings).__name__, name)


# Embeddings classes whose embed_query(t) is by definition embed_documents([t])[0].
_QUERY_IS_DOCUMENT = (("aaflow_adapters.langchain.embeddings", "AAFlowEmbeddings"),
                      ("langchain_openai", "OpenAIEmbeddings"), ("langchain_openai", "AzureOpenAIEmbeddings"),
                      ("langchain_core.embeddings", "DeterministicFakeEmbedding"))


def _query_is_document(embeddings: Embeddings) -> bool:
    if sentence_transformers_path(embeddings) is not None:
        return True
    return any(_unchanged(embeddings, optional_class(m, n), ("embed_documents", "embed_query")) for m, n in _QUERY_IS_DOCUMENT)


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
