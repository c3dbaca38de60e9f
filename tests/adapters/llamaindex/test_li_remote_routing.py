"""`OpenAIEmbedding` through aaflow's remote client: stock's nodes, vectors and events, over real HTTP.

Models the lean path does not cover (a subclass, a custom http_client, openai-client keyword
arguments) keep the integration's own client, say so in a debug log, and still give stock's output.
"""
from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from li_support import assert_same_nodes, stable_id
from llama_index.core import Document
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.embeddings.openai import OpenAIEmbedding

from aaflow_adapters.llamaindex import AAFlowIngestionPipeline
from aaflow_core.remote import shared_client
from aaflow_core.serve import STATS, HashEmbeddings, ServerThread, create_app

DOCS = [Document(text=f"Remote document {i}.\n" + f"It talks about topic {i % 4} at length.\n" * 30, doc_id=f"r{i}")
        for i in range(6)]


class MyEmbedding(OpenAIEmbedding):
    """A user's subclass: aaflow cannot know what it changed, so it keeps its own client."""


@pytest.fixture(scope="module")
def server():
    with ServerThread(create_app(embeddings=HashEmbeddings(dim=24), latency_s=0.01)) as srv:
        yield srv


def steps(url: str, cls: type = OpenAIEmbedding, **kwargs) -> list:
    model = cls(model="text-embedding-3-small", api_base=url, api_key="sk-local", embed_batch_size=4, max_retries=1,
                **kwargs)
    return [SentenceSplitter(chunk_size=48, chunk_overlap=4, id_func=stable_id), model]


def requests_through_client(url: str) -> int:
    return sum(u.requests for u in shared_client().usage().values() if u.endpoint == url)


def test_routed_run_and_arun_give_stocks_nodes_with_requests_in_flight(server):
    stock = IngestionPipeline(transformations=steps(server.base_url, dimensions=24)).run(documents=list(DOCS))
    before, server.app[STATS].max_in_flight = requests_through_client(server.base_url), 0
    ours = AAFlowIngestionPipeline(transformations=steps(server.base_url, dimensions=24)).run(documents=list(DOCS))
    assert_same_nodes(stock, ours, exact=True)
    assert [n.embedding for n in ours] == [n.embedding for n in stock]  # the server's float32 values, bit for bit
    assert requests_through_client(server.base_url) - before == -(-len(ours) // 4)
    assert server.app[STATS].max_in_flight > 1
    ours_async = asyncio.run(AAFlowIngestionPipeline(transformations=steps(server.base_url, dimensions=24)).arun(
        documents=list(DOCS)))
    assert_same_nodes(stock, ours_async, exact=True)


def test_routed_embedding_events_equal_stocks(server):
    def events(cls: type, **opts) -> list[list[str]]:
        handler = LlamaDebugHandler()
        model = steps(server.base_url, callback_manager=CallbackManager([handler]))[1]
        cls(transformations=[steps(server.base_url)[0], model], **opts).run(documents=list(DOCS))
        pairs = handler.get_event_pairs(CBEventType.EMBEDDING)
        return [end.payload["chunks"] for _, end in pairs]

    stock = events(IngestionPipeline)
    ours = events(AAFlowIngestionPipeline, parity=True)
    assert stock and sorted(ours) == sorted(stock)  # the same events; requests in flight together end in any order


@pytest.mark.parametrize("case", ["subclass", "http_client", "client_kwargs"])
def test_uncovered_models_keep_their_client_and_stocks_output(server, case, caplog):
    kwargs = {"subclass": {"cls": MyEmbedding}, "http_client": {"http_client": httpx.Client()},
              "client_kwargs": {"additional_kwargs": {"extra_headers": {"X-Trace": "1"}}}}[case]
    stock = IngestionPipeline(transformations=steps(server.base_url, **kwargs)).run(documents=list(DOCS))
    before = requests_through_client(server.base_url)
    with caplog.at_level(logging.DEBUG, logger="aaflow_adapters.llamaindex.remote"):
        ours = AAFlowIngestionPipeline(transformations=steps(server.base_url, **kwargs)).run(documents=list(DOCS))
    assert_same_nodes(stock, ours, exact=True)
    assert requests_through_client(server.base_url) == before  # the integration's own client sent them
    assert "keeps its own client" in caplog.text


@pytest.mark.parametrize("status", [401, 400])
def test_a_refused_request_raises_stocks_error_naming_the_node_and_writes_nothing(status):
    import faiss
    import openai
    from aiohttp import web
    from llama_index.vector_stores.faiss import FaissVectorStore

    from aaflow_core.serve.limits import error_response

    @web.middleware
    async def refuse(request: web.Request, handler):  # noqa: ANN001, ANN202
        return error_response(status, "Incorrect API key provided" if status == 401 else "bad input", code="refused")

    app = create_app(embeddings=HashEmbeddings(dim=24))
    app.middlewares.append(refuse)
    with ServerThread(app) as srv:
        with pytest.raises(openai.APIStatusError) as stock:
            IngestionPipeline(transformations=steps(srv.base_url)).run(documents=list(DOCS))
        store = FaissVectorStore(faiss_index=faiss.IndexFlatL2(24))
        pipe = AAFlowIngestionPipeline(transformations=steps(srv.base_url), vector_store=store)
        with pytest.raises(openai.APIStatusError) as ours:
            pipe.run(documents=list(DOCS))
    assert type(ours.value) is type(stock.value) and ours.value.status_code == status
    assert ours.value.code == stock.value.code == "refused"
    assert any("node " in note and "(document r" in note for note in ours.value.__notes__)
    assert store.client.ntotal == 0


def test_a_dead_endpoint_raises_stocks_connection_error():
    import openai

    url = "http://127.0.0.1:9/v1"
    with pytest.raises(openai.APIConnectionError):
        AAFlowIngestionPipeline(transformations=steps(url)).run(documents=list(DOCS))
