"""`OpenAI`/`OpenAILike` LLMs inside extractors, through aaflow's remote client: stock's nodes, over real HTTP.

The loopback endpoint answers chat completions deterministically (EchoChat), so stock's and
aaflow's runs must produce the same titles, questions and keywords; the usage counters show
whose client sent the requests.
"""
from __future__ import annotations

import asyncio
import logging

import pytest
from li_support import assert_same_nodes, stable_id
from llama_index.core import Document
from llama_index.core.extractors import KeywordExtractor, QuestionsAnsweredExtractor, TitleExtractor
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.llms.openai import OpenAI
from llama_index.llms.openai_like import OpenAILike

from aaflow_adapters.llamaindex import AAFlowIngestionPipeline
from aaflow_adapters.llamaindex.remote_llm import chat_body
from aaflow_core.serve import EchoChat, HashEmbeddings, ServerThread, create_app

DOCS = [Document(text=f"Report {i}. " + f"The plant in region {i % 3} grew by {i} percent this year. " * 12,
                 doc_id=f"d{i}") for i in range(4)]


class MyOpenAI(OpenAI):
    """A user's subclass: aaflow cannot know what it changed, so it keeps its own client."""


@pytest.fixture(scope="module")
def server():
    with ServerThread(create_app(chat=EchoChat(), embeddings=HashEmbeddings(dim=16), latency_s=0.005)) as srv:
        yield srv


def llm(url: str, cls: type = OpenAI, **kwargs):
    if cls is OpenAILike:
        return OpenAILike(model="echo", api_base=url, api_key="sk-local", is_chat_model=True, max_retries=1, **kwargs)
    return cls(model="gpt-4o-mini", api_base=url, api_key="sk-local", max_retries=1, **kwargs)


def steps(url: str, **kwargs) -> list:
    return [SentenceSplitter(chunk_size=40, chunk_overlap=0, id_func=stable_id),
            TitleExtractor(llm=llm(url, **kwargs), nodes=2),
            QuestionsAnsweredExtractor(llm=llm(url, **kwargs), questions=1),
            KeywordExtractor(llm=llm(url, **kwargs), keywords=2)]


def requests(pipe: AAFlowIngestionPipeline, url: str) -> int:
    usage = pipe.last_run.remote_usage.get(url.rstrip("/"))
    return 0 if usage is None else usage["requests"]


@pytest.mark.parametrize("cls", [OpenAI, OpenAILike])
def test_extractors_llm_calls_go_through_the_client_with_stocks_nodes(server, cls):
    stock = IngestionPipeline(transformations=steps(server.base_url, cls=cls)).run(documents=list(DOCS))
    pipe = AAFlowIngestionPipeline(transformations=steps(server.base_url, cls=cls))
    ours = pipe.run(documents=list(DOCS))
    assert_same_nodes(stock, ours)
    assert all(n.metadata["document_title"] and n.metadata["questions_this_excerpt_can_answer"] for n in ours)
    # titles: `nodes=2` per document plus one combine call; questions and keywords: one per node
    assert requests(pipe, server.base_url) == 3 * len(DOCS) + 2 * len(ours)
    usage = pipe.last_run.remote_usage[server.base_url]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0 and usage["rejections"] == 0


def test_arun_gives_stocks_nodes(server):
    stock = asyncio.run(IngestionPipeline(transformations=steps(server.base_url)).arun(documents=list(DOCS)))
    pipe = AAFlowIngestionPipeline(transformations=steps(server.base_url))
    ours = asyncio.run(pipe.arun(documents=list(DOCS)))
    assert_same_nodes(stock, ours)
    assert requests(pipe, server.base_url) == 3 * len(DOCS) + 2 * len(ours)


@pytest.mark.parametrize("case", ["subclass", "request_option"])
def test_uncovered_llms_keep_their_client_and_stocks_output(server, case, caplog):
    kwargs = {"subclass": {"cls": MyOpenAI},
              "request_option": {"additional_kwargs": {"extra_headers": {"X-Trace": "1"}}}}[case]
    stock = IngestionPipeline(transformations=steps(server.base_url, **kwargs)).run(documents=list(DOCS))
    pipe = AAFlowIngestionPipeline(transformations=steps(server.base_url, **kwargs))
    with caplog.at_level(logging.DEBUG, logger="aaflow_adapters.llamaindex.remote_llm"):
        ours = pipe.run(documents=list(DOCS))
    assert_same_nodes(stock, ours)
    assert requests(pipe, server.base_url) == 0  # the integration's own client sent them
    assert ("keeps its own client" if case == "subclass" else "request options ['extra_headers']") in caplog.text


def test_chat_body_is_what_the_openai_client_sends():
    body, why = chat_body({"messages": [{"role": "user", "content": "hi"}], "model": "m", "stream": False,
                           "temperature": 0.1, "max_tokens": 5, "extra_body": {"top_k": 3}})
    assert why is None and body == {"messages": [{"role": "user", "content": "hi"}], "model": "m", "stream": False,
                                    "temperature": 0.1, "max_tokens": 5, "top_k": 3}
    assert chat_body({"messages": [], "model": "m", "stream": True}) == (None, "streaming")
    assert chat_body({"messages": [], "model": "m", "bogus": 1})[1].startswith("arguments the openai client")
