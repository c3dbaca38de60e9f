"""Embedding requests sent as the split workers answer (embed_ahead.py): stock's nodes, requests and errors.

Real split worker processes, a real loopback OpenAI-compatible server that records the texts of
every request it serves, and stock `IngestionPipeline` on the same input beside each run.
"""
from __future__ import annotations

import asyncio
import gc

import openai
import pytest
from li_support import assert_same_nodes, stable_id
from llama_index.core import Document
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.embeddings.openai import OpenAIEmbedding

from aaflow_adapters.llamaindex import AAFlowIngestionPipeline, embed_ahead, start_split_workers
from aaflow_core.serve import HashEmbeddings, ServerThread, create_app
from aaflow_core.serve.faults import FailFirst, inject

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


def serve(*faults: FailFirst) -> tuple[ServerThread, Recording]:
    backend = Recording()
    app = create_app(embeddings=backend, latency_s=0.01)
    for fault in faults:
        inject(app, fault)
    return ServerThread(app), backend


def steps(url: str, callbacks: CallbackManager | None = None, **splitter) -> list:
    cm = callbacks or CallbackManager([])
    return [SentenceSplitter(chunk_size=40, chunk_overlap=4, id_func=stable_id, callback_manager=cm, **splitter),
            OpenAIEmbedding(model="text-embedding-3-small", api_base=url, api_key="sk-local", embed_batch_size=4,
                            max_retries=0, callback_manager=cm)]


def run(cls: type, url: str, docs: list, mode: str, callbacks: CallbackManager | None = None, **splitter) -> list:
    pipe = cls(transformations=steps(url, callbacks, **splitter))
    return asyncio.run(pipe.arun(documents=docs)) if mode == "arun" else pipe.run(documents=docs)


def slices(nodes: list, size: int = 4) -> list[tuple[str, ...]]:
    """Stock's requests for these nodes: consecutive `size` slices of their embedding texts."""
    texts = [n.get_content(metadata_mode="embed").replace("\n", " ") for n in nodes]
    return [tuple(texts[i:i + size]) for i in range(0, len(texts), size)]


@pytest.mark.parametrize("mode", ["run", "arun"])
@pytest.mark.parametrize("include_metadata", [True, False])
def test_requests_leave_before_the_nodes_are_built_and_are_stocks(mode: str, include_metadata: bool):
    server, backend = serve()
    with server:
        stock = run(IngestionPipeline, server.base_url, list(DOCS), mode, include_metadata=include_metadata)
        stocks_requests, backend.requests = sorted(backend.requests), []
        handler = LlamaDebugHandler()
        ours = run(AAFlowIngestionPipeline, server.base_url, list(DOCS), mode, CallbackManager([handler]),
                   include_metadata=include_metadata)
    assert_same_nodes(stock, ours, exact=True)
    assert [n.embedding for n in ours] == [n.embedding for n in stock]
    assert stocks_requests == sorted(slices(stock))
    assert sorted(backend.requests) == stocks_requests  # the same requests: no guess missed, none repeated
    kinds = [e.event_type for e in handler.get_events() if e.event_type in (CBEventType.EMBEDDING,
                                                                            CBEventType.NODE_PARSING)]
    first_parse = kinds.index(CBEventType.NODE_PARSING)
    assert kinds[:first_parse].count(CBEventType.EMBEDDING) >= len(stocks_requests)  # all sent before any node
    assert handler.get_event_pairs(CBEventType.CHUNKING) and len(handler.get_event_pairs(CBEventType.CHUNKING)) == len(DOCS)


def test_a_missed_guess_is_embedded_by_the_step_and_the_unused_request_is_dropped(monkeypatch, recwarn):
    real = embed_ahead.chunk_text
    monkeypatch.setattr(embed_ahead, "chunk_text", lambda doc, meta: (lambda c, f=real(doc, meta): f(c) + " (wrong)"))
    server, backend = serve()
    with server:
        stock = run(IngestionPipeline, server.base_url, list(DOCS), "run")
        backend.requests = []
        ours = run(AAFlowIngestionPipeline, server.base_url, list(DOCS), "run")
    assert_same_nodes(stock, ours, exact=True)
    assert [n.embedding for n in ours] == [n.embedding for n in stock]
    assert set(slices(stock)) <= set(backend.requests)  # the step sent every real micro-batch itself
    gc.collect()
    assert not [w for w in recwarn if "never retrieved" in str(w.message)]


class Page(Document):
    """A Document subclass: what the splitter builds from it is not predicted."""


def test_an_input_it_cannot_predict_ends_the_early_requests_there():
    docs = list(DOCS[:3]) + [Page(text=DOCS[3].text, doc_id="page")] + list(DOCS[4:])
    server, backend = serve()
    with server:
        stock = run(IngestionPipeline, server.base_url, docs, "run")
        stocks_requests, backend.requests = sorted(backend.requests), []
        ours = run(AAFlowIngestionPipeline, server.base_url, docs, "run")
    assert_same_nodes(stock, ours, exact=True)
    assert sorted(backend.requests) == stocks_requests


def test_a_failed_early_request_is_sent_again_by_the_step():
    server, backend = serve(FailFirst(2, status=500, path_suffix="/embeddings"))
    with server:
        ours = run(AAFlowIngestionPipeline, server.base_url, list(DOCS), "run")  # max_retries=0: no retry of its own
        stock = run(IngestionPipeline, server.base_url, list(DOCS), "run")
    assert_same_nodes(stock, ours, exact=True)
    assert [n.embedding for n in ours] == [n.embedding for n in stock]


def test_a_refused_early_request_raises_stocks_error_naming_the_node():
    server, _ = serve(FailFirst(10_000, status=401, path_suffix="/embeddings"))
    with server:
        with pytest.raises(openai.AuthenticationError) as ours:
            run(AAFlowIngestionPipeline, server.base_url, list(DOCS), "run")
    assert any("node a" in note and "(document a" in note for note in ours.value.__notes__)
