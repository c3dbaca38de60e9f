"""ChatOpenAI inside an aaflow run goes through aaflow_core.remote: stock's messages and events, over real HTTP."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from aaflow_adapters.langchain import AAFlowRunnable
from aaflow_core.remote import RemoteCallError, shared_client
from aaflow_core.serve import STATS, EchoChat, ServerThread, create_app
from aaflow_core.serve.faults import FailFirst, inject

from .conftest import QUESTIONS, Recorder

PROMPT = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
INPUTS = [{"q": f"{q} (#{i})"} for i, q in enumerate(QUESTIONS * 2)]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Any]]:
    app = create_app(chat=EchoChat(), latency_s=0.02)
    with ServerThread(app) as running:
        yield running.base_url, app[STATS]


def chat(base_url: str, **kwargs: Any) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(base_url=base_url, api_key="not-needed", model="echo", max_retries=0, temperature=0, **kwargs)


def lean_requests(base_url: str) -> int:
    return sum(u.requests for u in shared_client().usage().values() if u.endpoint == base_url.rstrip("/"))


def comparable(message: Any) -> dict[str, Any]:
    """A message without its random run id and the server's random completion id."""
    out = message.model_dump(exclude={"id"})
    out["response_metadata"] = {k: v for k, v in out["response_metadata"].items() if k != "id"}
    return out


def test_chain_messages_and_events_equal_stock(server: tuple[str, Any]) -> None:
    base_url, stats = server
    chain = PROMPT | chat(base_url)
    stock, fast = Recorder(), Recorder()
    expected = chain.batch(INPUTS, {"callbacks": [stock]})
    before, sent = lean_requests(base_url), stats.requests
    got = AAFlowRunnable(chain, batch_size=4).batch(INPUTS, {"callbacks": [fast]})
    assert lean_requests(base_url) - before == len(INPUTS) == stats.requests - sent  # all through the lean layer
    assert [comparable(m) for m in got] == [comparable(m) for m in expected]
    assert got[0].usage_metadata and got[0].content.startswith("echo: ")
    assert fast.events() == stock.events()


def test_models_inside_agents_take_the_lean_path(server: tuple[str, Any]) -> None:
    base_url, _ = server
    agent = create_agent(chat(base_url), tools=[])
    inputs = [{"messages": [("human", x["q"])]} for x in INPUTS]
    expected = agent.batch(inputs)
    before = lean_requests(base_url)
    got = AAFlowRunnable(agent).batch(inputs)
    assert lean_requests(base_url) - before == len(inputs)
    assert [[comparable(m) for m in s["messages"][1:]] for s in got] == \
           [[comparable(m) for m in s["messages"][1:]] for s in expected]


def test_uncovered_models_keep_their_client(server: tuple[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    from langchain_openai import ChatOpenAI

    class MyChat(ChatOpenAI):
        pass

    base_url, _ = server
    cases = {"subclass": MyChat(base_url=base_url, api_key="x", model="echo", max_retries=0),
             "headers": chat(base_url, include_response_headers=True),
             "extra_headers": chat(base_url).bind(extra_headers={"X-Test": "1"})}
    for why, model in cases.items():
        chain = PROMPT | model | StrOutputParser()
        expected = chain.batch(INPUTS[:4])
        before = lean_requests(base_url)
        with caplog.at_level(logging.DEBUG, logger="aaflow_adapters.langchain.lean_openai"):
            assert AAFlowRunnable(chain).batch(INPUTS[:4]) == expected, why
        assert lean_requests(base_url) == before, why
        assert "keeps its own client" in caplog.text, why
        caplog.clear()


def test_outside_aaflow_nothing_changes(server: tuple[str, Any]) -> None:
    base_url, _ = server
    AAFlowRunnable(PROMPT | chat(base_url)).batch(INPUTS[:2])  # the hook is installed by now
    before = lean_requests(base_url)
    assert chat(base_url).invoke("hello").content == "echo: hello"
    assert lean_requests(base_url) == before


def stock_error(chain: Any, value: Any) -> Exception:
    """What stock raises when the endpoint answers 400 to this request."""
    app = create_app(chat=EchoChat())
    inject(app, FailFirst(count=1, status=400))
    with ServerThread(app) as running:
        stock = PROMPT | chat(running.base_url) | StrOutputParser()
        with pytest.raises(Exception) as caught:
            stock.invoke(value)
    return caught.value


def test_failures_name_the_item_and_keep_the_rest() -> None:
    app = create_app(chat=EchoChat())
    fault = inject(app, FailFirst(count=1, status=400))
    with ServerThread(app) as running:
        chain = PROMPT | chat(running.base_url) | StrOutputParser()
        got = AAFlowRunnable(chain, max_concurrency=1).batch(INPUTS[:4], return_exceptions=True)
    assert fault.injected == 1
    errors = [g for g in got if isinstance(g, Exception)]
    expected = stock_error(chain, INPUTS[0])
    assert len(errors) == 1 and type(errors[0]) is type(expected)  # what stock raises for a 400
    causes = [errors[0]]
    while causes[-1].__cause__ is not None:
        causes.append(causes[-1].__cause__)
    assert any(isinstance(c, RemoteCallError) for c in causes)
    assert any("aaflow: chat request" in note for note in errors[0].__notes__)  # the item, named
    assert sum(isinstance(g, str) and g.startswith("echo: ") for g in got) == 3


def test_rate_limits_are_retried_not_lost() -> None:
    app = create_app(chat=EchoChat())
    fault = inject(app, FailFirst(count=5, status=429, retry_after_s=0.01))
    with ServerThread(app) as running:
        chain = PROMPT | chat(running.base_url) | StrOutputParser()
        got = AAFlowRunnable(chain).batch(INPUTS)
    assert fault.injected == 5 and all(g.startswith("echo: ") for g in got)


def test_openai_embeddings_index_bit_exact_with_requests_in_flight(corpus_docs: Any, splitter: Any) -> None:
    from langchain_community.vectorstores import FAISS
    from langchain_openai import OpenAIEmbeddings

    from aaflow_adapters.langchain import index_documents
    from aaflow_core.serve import HashEmbeddings

    app = create_app(embeddings=HashEmbeddings(dim=32), latency_s=0.02, max_inputs=4)
    with ServerThread(app) as running:
        emb = OpenAIEmbeddings(base_url=running.base_url, api_key="x", model="m", chunk_size=4,
                               check_embedding_ctx_length=False, max_retries=0)
        chunks = splitter.split_documents(corpus_docs)
        stock = FAISS.from_documents(chunks, emb)
        assert app[STATS].max_in_flight == 1  # stock sends its requests one after another
        fast = FAISS.from_documents(chunks[:1], emb)
        fast.delete([fast.index_to_docstore_id[0]])
        app[STATS].max_in_flight, before = 0, lean_requests(running.base_url)
        index_documents(corpus_docs, splitter, emb, fast, embed_batch_size=16)
        assert lean_requests(running.base_url) - before == -(-len(chunks) // 4)  # the same requests, all lean
        assert app[STATS].max_in_flight > 4
    n = stock.index.ntotal
    assert fast.index.ntotal == n and (fast.index.reconstruct_n(0, n) == stock.index.reconstruct_n(0, n)).all()
    assert [fast.docstore.search(fast.index_to_docstore_id[i]).page_content for i in range(n)] == \
           [stock.docstore.search(stock.index_to_docstore_id[i]).page_content for i in range(n)]


def _body(**changes: Any) -> dict[str, Any]:
    message = {"role": "assistant", "content": "hi", **changes.pop("message", {})}
    choice = {"index": 0, "message": message, "finish_reason": "stop", **changes.pop("choice", {})}
    extra_usage = changes.pop("usage", {})
    usage = None if extra_usage is None else {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                                              **extra_usage}
    body = {"id": "c1", "object": "chat.completion", "created": 0, "model": "m", "choices": [choice], "usage": usage}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()
_CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
BODIES = {
    "plain": _body(),
    "tool call": _body(message={"content": None, "tool_calls": [_CALL]}, choice={"finish_reason": "tool_calls"}),
    "custom tool call": _body(message={"content": None, "tool_calls": [
        {"id": "c", "type": "custom", "custom": {"name": "f", "input": "x"}}]}),
    "broken tool call": _body(message={"content": None, "tool_calls": [{"id": "c", "function": {"name": "f",
                                                                                                "arguments": "{"}}]}),
    "integer logprobs": _body(choice={"logprobs": {"content": [{"token": "a", "logprob": -1, "bytes": [97],
                                                                "top_logprobs": []}], "refusal": None}}),
    "extra fields": _body(message={"reasoning_content": "think"}, usage={"cost": 3}, provider="x"),
    "no object/created": _body(object=_DROP, created=_DROP),
    "no finish_reason": _body(choice={"finish_reason": None}),
    "unknown finish_reason": _body(choice={"finish_reason": "abort"}),
    "float tokens": _body(usage={"prompt_tokens": 10.0}),
    "no usage": _body(usage=None),
    "token details": _body(usage={"prompt_tokens_details": {"cached_tokens": 3},
                                  "completion_tokens_details": {"reasoning_tokens": 2}}),
    "tier and fingerprint": _body(service_tier="priority", system_fingerprint="fp"),
    "refusal": _body(message={"content": None, "refusal": "no"}),
    "audio": _body(message={"audio": {"id": "a", "data": "x", "expires_at": 1, "transcript": "t"}}),
    "function call": _body(message={"function_call": {"name": "f", "arguments": "{}"}}),
}


@pytest.mark.parametrize("name", list(BODIES))
def test_responses_parse_as_the_openai_clients_objects_do(name: str) -> None:
    """`_completion` validates strictly where it can; the chat result equals stock's (model_construct) on
    every body shape, including the ones that fall back to construction."""
    import copy

    from openai.types.chat import ChatCompletion

    from aaflow_adapters.langchain.lean_openai import _completion

    model = chat("http://127.0.0.1:9/v1")

    def result(build: Any) -> Any:
        try:
            out = model._create_chat_result(build(copy.deepcopy(BODIES[name])), {})
        except Exception as exc:  # noqa: BLE001 - stock fails on some shapes; so must the lean path, alike
            return type(exc), str(exc)
        return out, [g.message.model_dump() for g in out.generations]

    assert result(_completion) == result(lambda body: ChatCompletion.model_construct(**body))
    if name in ("plain", "tool call", "extra fields", "token details", "refusal"):  # the fast path covers these
        ChatCompletion.model_validate(copy.deepcopy(BODIES[name]), strict=True)
