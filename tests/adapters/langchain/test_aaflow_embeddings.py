"""AAFlowEmbeddings: LangChain's standard embedding tests, and the same vectors and top-k as HuggingFaceEmbeddings."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from langchain_community.vectorstores import FAISS
from langchain_core.documents import Document
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from aaflow_adapters.langchain.embeddings import AAFlowEmbeddings, accelerated
from aaflow_core.errors import ConfigError
from aaflow_core.models import TOLERANCES

pytestmark = pytest.mark.model
EXACT = {"precision": "fp32", "backend": "openvino", "threads": 2}  # an exact engine, no calibration in tests


class TestAAFlowEmbeddingsStandard(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[AAFlowEmbeddings]:
        return AAFlowEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return EXACT


class TestAAFlowEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[AAFlowEmbeddings]:
        return AAFlowEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return EXACT


def test_accelerated_hf_embeddings_give_stock_vectors_and_top_k(hf_embeddings: Any, corpus_docs: list[Document]) -> None:
    fast = accelerated(hf_embeddings, precision="fp32", backend="openvino")
    texts = [d.page_content for d in corpus_docs[:40]]
    stock, ours = np.array(hf_embeddings.embed_documents(texts)), np.array(fast.embed_documents(texts))
    assert np.abs(stock - ours).max() <= TOLERANCES["openvino-fp32"].max_abs
    assert fast.embed_matrix(texts).dtype == np.float32 and fast.embed_matrix(texts).flags.c_contiguous
    stock_store, ours_store = FAISS.from_texts(texts, hf_embeddings), FAISS.from_texts(texts, fast)
    for q in ("How do I decode JSON?", "split a shell command line", "wildcard filename matching"):
        want = [d.page_content for d in stock_store.similarity_search(q, k=5)]
        assert [d.page_content for d in ours_store.similarity_search(q, k=5)] == want


def test_accelerated_refuses_what_it_cannot_reproduce(hf_embeddings: Any) -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    with pytest.raises(ConfigError, match="only HuggingFaceEmbeddings"):
        accelerated(DeterministicFakeEmbedding(size=8))
    prompted = hf_embeddings.model_copy(update={"encode_kwargs": {"prompt": "query: "}})
    with pytest.raises(ConfigError) as info:
        accelerated(prompted)
    assert info.value.field == "encode_kwargs"
    with pytest.raises(ConfigError) as info:
        AAFlowEmbeddings(precision="auto", backend="torch")
    assert info.value.field == "backend"


def test_a_retriever_over_aaflow_embeddings_batches_with_stock_documents(corpus_docs: list[Document]) -> None:
    from aaflow_adapters.langchain import AAFlowRunnable

    fast = AAFlowEmbeddings(**EXACT)
    retriever = FAISS.from_documents(corpus_docs[:40], fast).as_retriever(search_kwargs={"k": 3})
    questions = ["How do I decode JSON?", "split a shell command line", "wildcard filename matching"]
    stock = retriever.batch(questions)
    assert AAFlowRunnable(retriever).batch(questions) == stock
