"""index_documents fills a vector store as splitter + add_documents would."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore

from aaflow_adapters.langchain import index_documents
from aaflow_core import InputError


def empty_faiss(embeddings: Any) -> Any:
    import faiss
    from langchain_community.docstore.in_memory import InMemoryDocstore
    from langchain_community.vectorstores import FAISS

    return FAISS(embeddings, faiss.IndexFlatL2(384), InMemoryDocstore(), {})


def rows(store: Any) -> list[tuple[str, dict[str, Any]]]:
    docs = [store.docstore.search(store.index_to_docstore_id[i]) for i in range(store.index.ntotal)]
    return [(d.page_content, d.metadata) for d in docs]


class SpyIndex:
    """Forwards to the real FAISS index and remembers what `add` was handed."""

    def __init__(self, index: Any) -> None:
        self.index, self.seen = index, []

    def add(self, vectors: np.ndarray) -> None:
        self.seen.append((vectors.dtype, vectors.flags.c_contiguous, vectors.flags.writeable))
        self.index.add(vectors)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.index, name)


def test_same_store_contents_as_add_documents(hf_embeddings: Any, corpus_docs: list[Document], splitter: Any) -> None:
    docs = [Document(page_content=d.page_content[:3000], metadata=d.metadata) for d in corpus_docs[:2]]
    stock = empty_faiss(hf_embeddings)
    stock_ids = stock.add_documents(splitter.split_documents(docs))
    fast = empty_faiss(hf_embeddings)
    spy = fast.index = SpyIndex(fast.index)
    ids = index_documents(docs, splitter, hf_embeddings, fast, docs_per_batch=1, embed_batch_size=24)
    fast.index = spy.index
    assert rows(fast) == rows(stock) and len(ids) == len(stock_ids) == len(set(ids))
    a, b = stock.index.reconstruct_n(0, stock.index.ntotal), fast.index.reconstruct_n(0, fast.index.ntotal)
    np.testing.assert_allclose(b, a, atol=1e-5)  # batch composition differs from one big call (FRAMEWORKS.md)
    query = "How do I decode JSON?"
    assert [d.page_content for d in fast.similarity_search(query, k=4)] == \
        [d.page_content for d in stock.similarity_search(query, k=4)]
    # FAISS was handed read-only float32 views of the Arrow embedding buffers, never Python lists
    assert spy.seen and all(s == (np.float32, True, False) for s in spy.seen)
    again = empty_faiss(hf_embeddings)
    index_documents(docs, splitter, hf_embeddings, again, docs_per_batch=1, embed_batch_size=24)
    assert np.array_equal(again.index.reconstruct_n(0, again.index.ntotal), b)  # deterministic: same bits


def test_other_vector_stores_through_their_api(corpus_docs: list[Document], splitter: Any) -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    emb = DeterministicFakeEmbedding(size=16)
    stock, fast = InMemoryVectorStore(emb), InMemoryVectorStore(emb)
    stock.add_documents(splitter.split_documents(corpus_docs[:1]))
    index_documents(corpus_docs[:1], splitter, emb, fast)
    texts = [v["text"] for v in stock.store.values()]
    assert texts and [v["text"] for v in fast.store.values()] == texts
    assert [v["vector"] for v in fast.store.values()] == [v["vector"] for v in stock.store.values()]


def test_bad_document_is_named(hf_embeddings: Any, splitter: Any) -> None:
    with pytest.raises(InputError, match=r"docs\[1\]"):
        index_documents([Document(page_content="ok"), "not a document"], splitter, hf_embeddings,
                        empty_faiss(hf_embeddings))
