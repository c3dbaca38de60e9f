"""A remote OpenAI-compatible embeddings endpoint on 127.0.0.1: same nodes, calls overlapped."""
from __future__ import annotations

import asyncio

import pytest
from li_support import assert_same_nodes, stable_id
from llama_index.core import Document
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.embeddings.openai import OpenAIEmbedding

from aaflow_adapters.llamaindex import AAFlowIngestionPipeline
from aaflow_core.serve import STATS, ModelEmbeddings, ServerThread, create_app

pytestmark = pytest.mark.model
DOCS = [Document(text=f"Remote document {i}. " + f"It talks about topic {i % 4} at length. " * 30, doc_id=f"r{i}")
        for i in range(4)]


@pytest.fixture(scope="module")
def server():
    app = create_app(embeddings=ModelEmbeddings(threads=2), latency_s=0.02)
    with ServerThread(app) as srv:
        yield srv


def steps(url: str) -> list:
    model = OpenAIEmbedding(model="text-embedding-3-small", api_base=url, api_key="sk-local", embed_batch_size=4,
                            max_retries=0)
    return [SentenceSplitter(chunk_size=48, chunk_overlap=4, id_func=stable_id), model]


def test_remote_embeddings_same_nodes_with_requests_in_flight(server):
    stats = server.app[STATS]
    stock = IngestionPipeline(transformations=steps(server.base_url)).run(documents=list(DOCS))
    assert stats.max_in_flight == 1  # stock's sync run sends one request at a time
    stats.max_in_flight = 0
    requests_before = stats.requests
    ours = AAFlowIngestionPipeline(transformations=steps(server.base_url), embed_concurrency=4).run(
        documents=list(DOCS))
    assert_same_nodes(stock, ours)
    assert stats.requests - requests_before == -(-len(ours) // 4)  # the same request sizes as stock
    assert stats.max_in_flight > 1


def test_remote_embeddings_arun(server):
    stock = asyncio.run(IngestionPipeline(transformations=steps(server.base_url)).arun(documents=list(DOCS)))
    ours = asyncio.run(AAFlowIngestionPipeline(transformations=steps(server.base_url)).arun(documents=list(DOCS)))
    assert_same_nodes(stock, ours)
