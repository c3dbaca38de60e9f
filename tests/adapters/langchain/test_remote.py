"""The remote path over real HTTP: ChatOpenAI and OpenAIEmbeddings against aaflow's server on loopback."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from aaflow_adapters.langchain import AAFlowRunnable
from aaflow_core.serve import STATS, EchoChat, ModelEmbeddings, ServerThread, create_app

from .conftest import QUESTIONS, rag_chain


@pytest.fixture(scope="module")
def server(embedder: Any) -> Iterator[tuple[str, Any]]:
    app = create_app(chat=EchoChat(), embeddings=ModelEmbeddings(), latency_s=0.05)
    with ServerThread(app) as running:
        yield running.base_url, app[STATS]


def chat(base_url: str) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(base_url=base_url, api_key="not-needed", model="echo", max_retries=0, temperature=0)


def test_chat_openai_chain_over_http(server: tuple[str, Any]) -> None:
    base_url, stats = server
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    chain = prompt | chat(base_url) | StrOutputParser()
    inputs = [{"q": f"{q} (#{i})"} for i, q in enumerate(QUESTIONS * 3)]
    expected = chain.batch(inputs)
    assert all(answer.startswith("echo: ") for answer in expected)
    stats.max_in_flight = 0
    assert AAFlowRunnable(chain, batch_size=6, max_concurrency=64).batch(inputs) == expected
    assert stats.max_in_flight > 6  # more requests in flight than LangChain's default pool allows


def test_rag_with_remote_embeddings_and_chat(server: tuple[str, Any], corpus_docs: Any, splitter: Any) -> None:
    from langchain_community.vectorstores import FAISS
    from langchain_openai import OpenAIEmbeddings

    base_url, stats = server
    embeddings = OpenAIEmbeddings(base_url=base_url, api_key="not-needed", model="minilm",
                                  check_embedding_ctx_length=False, max_retries=0)
    store = FAISS.from_documents(splitter.split_documents(corpus_docs[:1]), embeddings)
    chain = rag_chain(store.as_retriever(search_kwargs={"k": 2}), chat(base_url))
    expected = chain.batch(QUESTIONS[:8])
    before = stats.requests
    assert AAFlowRunnable(chain, batch_size=4).batch(QUESTIONS[:8]) == expected
    # 8 chat requests + one embeddings request per micro-batch of 4 queries (stock: one per query)
    assert stats.requests - before == 8 + 2
