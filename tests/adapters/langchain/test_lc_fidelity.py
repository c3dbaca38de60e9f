"""Gaps found by trying the LangChain adapter as a new user would (issue 18), each against stock."""
from __future__ import annotations

import asyncio
import warnings
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda

from aaflow_adapters.langchain import AAFlowRunnable, index_documents
from aaflow_adapters.langchain.retrieval import embed_matrix
from tests.adapters.langchain.test_ingest import empty_faiss, rows

QUERIES = ["decode json", "split a shell line", "match file names", "json decodes documents"]
TEXTS = ["json decodes documents", "shlex splits shell lines", "fnmatch matches file names with wildcards",
         "pretty printing with indentation"]


@pytest.fixture(scope="module")
def community_hf() -> Any:
    """langchain_community's HuggingFaceEmbeddings (deprecated, still in many tutorials)."""
    from langchain_community.embeddings import HuggingFaceEmbeddings

    from aaflow_core.models.embedding import bundled_model_path

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return HuggingFaceEmbeddings(model_name=str(bundled_model_path()))


def _ids(results: list[Any]) -> list[list[str | None]]:
    return [[d.id for d in docs] for docs in results]


@pytest.mark.model
def test_community_huggingface_retriever_and_index_documents(community_hf: Any, corpus_docs: list[Document],
                                                             splitter: Any) -> None:
    from langchain_community.vectorstores import FAISS

    retriever = FAISS.from_texts(TEXTS, community_hf).as_retriever(search_kwargs={"k": 2})
    assert _ids(AAFlowRunnable(retriever).batch(QUERIES)) == _ids(retriever.batch(QUERIES))
    # the same encode call embed_documents makes, so the same bits
    assert np.array_equal(embed_matrix(community_hf, TEXTS), np.asarray(community_hf.embed_documents(TEXTS), np.float32))
    docs = corpus_docs[:1]
    stock, fast = empty_faiss(community_hf), empty_faiss(community_hf)
    stock.add_documents(splitter.split_documents(docs))
    index_documents(docs, splitter, community_hf, fast, embed_batch_size=None)
    assert rows(fast) == rows(stock)
    assert np.array_equal(fast.index.reconstruct_n(0, fast.index.ntotal), stock.index.reconstruct_n(0, stock.index.ntotal))


@pytest.mark.model
def test_a_subclass_that_overrides_embedding_is_called_through_its_api(hf_embeddings: Any) -> None:
    from langchain_community.vectorstores import FAISS
    from langchain_huggingface import HuggingFaceEmbeddings

    class Prefixed(HuggingFaceEmbeddings):  # e.g. E5-style "query: " prefixes
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return super().embed_documents([f"passage: {t}" for t in texts])

        def embed_query(self, text: str) -> list[float]:
            return super().embed_documents([f"query: {text}"])[0]

    emb = Prefixed(model_name=hf_embeddings.model_name)
    retriever = FAISS.from_texts(TEXTS, emb).as_retriever(search_kwargs={"k": 2})
    assert _ids(AAFlowRunnable(retriever).batch(QUERIES)) == _ids(retriever.batch(QUERIES))
    assert np.array_equal(embed_matrix(emb, TEXTS[:2]), np.asarray(emb.embed_documents(TEXTS[:2]), np.float32))
    ours = embed_matrix(emb, QUERIES[:2], query=True)
    assert np.array_equal(ours, np.asarray([emb.embed_query(q) for q in QUERIES[:2]], np.float32))


@pytest.mark.model
def test_index_documents_default_within_stated_tolerance_and_none_is_stock_bits(
        hf_embeddings: Any, corpus_docs: list[Document], splitter: Any) -> None:
    docs = [Document(page_content=d.page_content[:2500], metadata=d.metadata) for d in corpus_docs[:2]]
    stock = empty_faiss(hf_embeddings)
    stock.add_documents(splitter.split_documents(docs))
    expected = stock.index.reconstruct_n(0, stock.index.ntotal)
    windowed, whole = empty_faiss(hf_embeddings), empty_faiss(hf_embeddings)
    index_documents(docs, splitter, hf_embeddings, windowed, embed_batch_size=3)  # many windows
    index_documents(docs, splitter, hf_embeddings, whole, docs_per_batch=1, embed_batch_size=None)
    assert rows(windowed) == rows(whole) == rows(stock)
    got = windowed.index.reconstruct_n(0, windowed.index.ntotal)
    assert np.abs(got - expected).max() <= 1e-6  # the tolerance the docstring states
    assert np.array_equal(whole.index.reconstruct_n(0, whole.index.ntotal), expected)


def _fails(name: str) -> Any:
    def fn(x: Any) -> Any:
        raise ValueError(f"{name} failed on {x}")

    return RunnableLambda(fn, name=name)


def _errors(results: Any) -> dict[int, str]:
    return {i: f"{type(e).__name__}: {e}" for i, e in results}


@pytest.mark.parametrize("nested", [False, True])
def test_batch_as_completed_returns_the_primary_error_when_every_fallback_fails(nested: bool) -> None:
    guarded = _fails("primary").with_fallbacks([_fails("fallback")])
    chain = RunnableLambda(lambda x: x + 1) | guarded if nested else guarded
    inputs = [1, 2, 3]
    ours = AAFlowRunnable(chain)
    expected = _errors(chain.batch_as_completed(inputs, return_exceptions=True))
    assert all("primary" in e for e in expected.values())  # stock: invoke per input raises the primary's
    assert _errors(ours.batch_as_completed(inputs, return_exceptions=True)) == expected

    async def both() -> tuple[dict[int, str], dict[int, str]]:
        s = [x async for x in chain.abatch_as_completed(inputs, return_exceptions=True)]
        o = [x async for x in ours.abatch_as_completed(inputs, return_exceptions=True)]
        return _errors(s), _errors(o)

    stock_async, ours_async = asyncio.run(both())
    assert ours_async == stock_async == expected
    # batch keeps stock's batch answer (RunnableWithFallbacks.batch reports the last fallback's error)
    stock_batch = [f"{type(e).__name__}: {e}" for e in chain.batch(inputs, return_exceptions=True)]
    assert [f"{type(e).__name__}: {e}" for e in ours.batch(inputs, return_exceptions=True)] == stock_batch


def test_batch_as_completed_fallback_that_succeeds_matches_stock() -> None:
    chain = RunnableLambda(lambda x: x * 2) | _fails("primary").with_fallbacks([RunnableLambda(lambda x: -x)])
    assert sorted(AAFlowRunnable(chain).batch_as_completed([1, 2])) == sorted(chain.batch_as_completed([1, 2]))


@pytest.mark.parametrize("name", ["bogus_option", "max_concurency", "batchsize"])
def test_unknown_or_misspelt_options_raise_naming_them(name: str) -> None:
    with pytest.raises(TypeError, match=rf"'{name}'.*accepted: .*max_concurrency") as info:
        AAFlowRunnable(RunnableLambda(lambda x: x), **{name: 3})
    assert isinstance(info.value, ValueError)  # also aaflow's ConfigError
    assert AAFlowRunnable(RunnableLambda(lambda x: x), max_concurrency=3, batch_size=2).max_concurrency == 3
