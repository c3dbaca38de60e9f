"""Embedding requests sent as the split workers answer (embed_ahead.py): stock's nodes, requests and errors.

Real split worker processes, a real loopback OpenAI-compatible server that records the texts of
every request it serves, and stock `IngestionPipeline` on the same input beside each run.
"""
from __future__ import annotations

import asyncio
import gc
import logging

import openai
import pytest
from aiohttp import web
from li_support import assert_same_nodes, stable_id
from llama_index.core import Document
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.embeddings.openai import OpenAIEmbedding

from aaflow_adapters.llamaindex import AAFlowIngestionPipeline, embed_ahead, start_split_workers
from aaflow_core.serve import HashEmbeddings, ServerThread, create_app
from aaflow_core.serve.faults import FailFirst, inject
from aaflow_core.serve.limits import error_response

DOCS = [Document(text=f"Ahead document {i}.\n" + f"It covers subject {i % 3} in some depth. " * (20 + 7 * i),
                 doc_id=f"a{i}", metadata={"file_name": f"a{i}.txt", "owner": f"team {i % 2}"},
                 excluded_embed_metadata_keys=["owner"]) for i in range(7)]


class Recording(HashEmbeddings):
    """The server's embeddings, noting the texts of each request as it arrives."""

    def __init__(self) -> None:
        super().__init__(dim=16)
        self.requests: list[tuple[str, ...]] = []

    async def embed(self, texts: list[str]):  # noqa: ANN201 - HashEmbeddings' own signature
        self.requests.append(tuple(texts))
        return await super().embed(texts)


@pytest.fixture(scope="module", autouse=True)
def workers():
    assert start_split_workers(2) == 2


def serve(*faults: FailFirst, refuse: bytes | None = None) -> tuple[ServerThread, Recording]:
    """A server (and its recording backend) failing as `faults` say, and every request whose body holds `refuse`."""
    backend = Recording()
    app = create_app(embeddings=backend, latency_s=0.01)
    for fault in faults:
        inject(app, fault)
    if refuse is not None:
        @web.middleware
        async def refusing(request: web.Request, handler):  # noqa: ANN001, ANN202 - aiohttp's middleware shape
            if refuse in await request.read():  # the body stays readable for the handler
                return error_response(500, "refused by the test", kind="server_error", code="refused")
            return await handler(request)

        app.middlewares.append(refusing)
    return ServerThread(app), backend


def steps(url: str, callbacks: CallbackManager | None = None, **splitter) -> list:
    cm = callbacks or CallbackManager([])
    return [SentenceSplitter(chunk_size=40, chunk_overlap=4, id_func=stable_id, callback_manager=cm, **splitter),
            OpenAIEmbedding(model="text-embedding-3-small", api_base=url, api_key="sk-local", embed_batch_size=4,
                            max_retries=0, callback_manager=cm)]


def run(cls: type, url: str, docs: list, mode: str, callbacks: CallbackManager | None = None, **splitter) -> list:
    extra = {"split_processes": 2} if cls is AAFlowIngestionPipeline else {}
    pipe = cls(transformations=steps(url, callbacks, **splitter), **extra)
    return asyncio.run(pipe.arun(documents=docs)) if mode == "arun" else pipe.run(documents=docs)


def side_by_side(docs: list, mode: str = "run", callbacks: CallbackManager | None = None,
                 **splitter) -> tuple[list, list, list[tuple[str, ...]], list[tuple[str, ...]]]:
    """(stock's nodes, ours, the requests the server got from stock, those it got from us), on one server."""
    server, backend = serve()
    with server:
        stock = run(IngestionPipeline, server.base_url, docs, mode, **splitter)
        stocks_requests, backend.requests = sorted(backend.requests), []
        ours = run(AAFlowIngestionPipeline, server.base_url, docs, mode, callbacks, **splitter)
    return stock, ours, stocks_requests, sorted(backend.requests)


def slices(nodes: list, size: int = 4) -> list[tuple[str, ...]]:
    """Stock's requests for these nodes: consecutive `size` slices of their embedding texts."""
    texts = [n.get_content(metadata_mode="embed").replace("\n", " ") for n in nodes]
    return [tuple(texts[i:i + size]) for i in range(0, len(texts), size)]


@pytest.mark.parametrize("mode", ["run", "arun"])
@pytest.mark.parametrize("include_metadata", [True, False])
def test_requests_leave_before_the_nodes_are_built_and_are_stocks(mode: str, include_metadata: bool):
    handler = LlamaDebugHandler()
    stock, ours, stocks_requests, our_requests = side_by_side(list(DOCS), mode, CallbackManager([handler]),
                                                              include_metadata=include_metadata)
    assert_same_nodes(stock, ours, exact=True)
    assert [n.embedding for n in ours] == [n.embedding for n in stock]
    assert stocks_requests == sorted(slices(stock))
    assert our_requests == stocks_requests  # the same requests: no guess missed, none repeated
    started: list[CBEventType] = []  # each event's type, in the order the events started
    seen: set[str] = set()
    for event in handler.get_events():
        if event.id_ not in seen:
            seen.add(event.id_)
            started.append(event.event_type)
    first_parse = started.index(CBEventType.NODE_PARSING)
    assert started[:first_parse].count(CBEventType.EMBEDDING) == len(stocks_requests)  # all sent before any node
    assert handler.get_event_pairs(CBEventType.CHUNKING) and len(handler.get_event_pairs(CBEventType.CHUNKING)) == len(DOCS)


def test_a_missed_guess_is_embedded_by_the_step_and_the_unused_request_is_dropped(monkeypatch, caplog):
    real = embed_ahead.chunk_text
    monkeypatch.setattr(embed_ahead, "chunk_text", lambda doc, meta: (lambda c, f=real(doc, meta): f(c) + " (wrong)"))
    with serve()[0] as server:
        stock = run(IngestionPipeline, server.base_url, list(DOCS), "run")
    server, backend = serve(refuse=b"(wrong)")  # every guessed micro-batch misses, and its request fails
    with server, caplog.at_level(logging.ERROR, logger="asyncio"):
        ours = run(AAFlowIngestionPipeline, server.base_url, list(DOCS), "run")
        gc.collect()
    assert_same_nodes(stock, ours, exact=True)
    assert [n.embedding for n in ours] == [n.embedding for n in stock]
    assert sorted(backend.requests) == sorted(slices(stock))  # the server answered only the step's own requests
    assert "never retrieved" not in caplog.text


def test_a_custom_metadata_separator_is_guessed_right():
    docs = [Document(text=d.text, doc_id=d.doc_id, metadata={**d.metadata, "kind": "note"},
                     metadata_separator=" | ") for d in DOCS]
    stock, ours, stocks_requests, our_requests = side_by_side(docs)
    assert_same_nodes(stock, ours, exact=True)
    assert " | " in stock[0].get_content(metadata_mode="embed")
    assert our_requests == stocks_requests


class Page(Document):
    """A Document subclass: what the splitter builds from it is not predicted."""


def test_an_input_it_cannot_predict_ends_the_early_requests_there(monkeypatch):
    docs = list(DOCS[:3]) + [Page(text=DOCS[3].text, doc_id="page")] + list(DOCS[4:])
    early: list[tuple[str, ...]] = []
    original = embed_ahead.EmbedAhead._start

    def start(self: embed_ahead.EmbedAhead) -> None:
        early.extend(self.to_start)
        original(self)

    monkeypatch.setattr(embed_ahead.EmbedAhead, "_start", start)
    stock, ours, stocks_requests, our_requests = side_by_side(docs)
    assert_same_nodes(stock, ours, exact=True)
    assert our_requests == stocks_requests
    before_page = sum(1 for n in stock if n.ref_doc_id in {"a0", "a1", "a2"})
    assert len(early) == before_page // 4  # the full micro-batches before it went early, the step sent the rest


@pytest.mark.parametrize("mode", ["run", "arun"])
def test_a_failed_early_request_fails_as_stocks_call_does(mode: str):
    errors = {}
    for cls in (IngestionPipeline, AAFlowIngestionPipeline):  # each on a server that fails its first 2 requests
        server, _ = serve(FailFirst(2, status=500, path_suffix="/embeddings"))
        with server, pytest.raises(openai.InternalServerError) as caught:
            run(cls, server.base_url, list(DOCS), mode)  # max_retries=0: no retry
        errors[cls] = caught.value
    assert any("node a" in note for note in errors[AAFlowIngestionPipeline].__notes__)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("doc", [
    Document(text="A text. " * 40, doc_id="t", text_template="{metadata_str}\n\n{content}{missing}",
             metadata={"k": "v"}),
    Document(text="A text. " * 40, doc_id="k", metadata={"k": "v"}),
], ids=["bad template", "non-string key"])
def test_an_input_stock_fails_on_fails_the_same_way_without_hanging(doc: Document):
    doc = doc.model_copy(deep=True)
    if doc.doc_id == "k":
        doc.metadata[7] = "seven"  # after construction, as a user's loader might
    with serve()[0] as server:
        with pytest.raises(Exception) as stock:
            IngestionPipeline(transformations=steps(server.base_url), disable_cache=True).run(documents=[doc])
        with pytest.raises(Exception) as ours:
            AAFlowIngestionPipeline(transformations=steps(server.base_url), disable_cache=True,
                                    split_processes=2).run(documents=[doc])
    assert isinstance(ours.value, type(stock.value))


def test_a_refused_early_request_raises_stocks_error_naming_the_node():
    server, _ = serve(FailFirst(10_000, status=401, path_suffix="/embeddings"))
    with server:
        with pytest.raises(openai.AuthenticationError) as ours:
            run(AAFlowIngestionPipeline, server.base_url, list(DOCS), "run")
    assert any("node a" in note and "(document a" in note for note in ours.value.__notes__)
