"""Generate end to end: the local model in process and behind the HTTP server, retries, order, errors.

The model is loaded once per session; answers are kept tiny (a few tokens) to fit the test budget.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pyarrow as pa
import pytest

from aaflow_core.errors import RemoteCallError
from aaflow_core.models.llm import render_prompt, shared_llm
from aaflow_core.operators.generate import GenerateOperator
from aaflow_core.pipelines import AskConfig, IngestConfig, ask, ingest
from aaflow_core.serve import STATS, EchoChat, ServerThread, create_app
from aaflow_core.serve.backends import ChatRequest
from aaflow_core.serve.faults import FailFirst, inject
from aaflow_core.serve.local_llm import local_llm_app

QUESTIONS = ["How do I serialize an object to JSON?", "What does shlex.split do?", "How do I match a filename pattern?"]
TOKENS = 8


@pytest.fixture(scope="module")
def llm():
    return shared_llm(None, 1)  # one thread: on a shared 2-core box two OpenMP threads stall badly


@pytest.fixture(scope="module")
def index(small_corpus, tmp_path_factory, embedder):
    out = tmp_path_factory.mktemp("gen") / "index"
    ingest(IngestConfig(paths=(str(small_corpus),), index_dir=str(out), threads=2, progress=False))
    return out


def small(**kw) -> AskConfig:
    return AskConfig(k=2, max_new_tokens=TOKENS, max_context_chars=300, threads=1, **kw)


def test_batched_greedy_answers_equal_one_at_a_time(llm):
    convos = [(("user", q),) for q in QUESTIONS] + [(("user", "Context:\n" + "json " * 150 + "\nWhat is json?"),)]
    alone = [llm.chat([c], TOKENS)[0] for c in convos]
    together = llm.chat(convos, TOKENS)
    reversed_pair = llm.chat(convos[:2][::-1], TOKENS)[::-1]
    assert together == alone and reversed_pair == alone[:2]
    assert all(a.text and a.completion_tokens <= TOKENS for a in alone)


def test_where_rows_depend_on_batch_mates_answers_are_decoded_alone(llm):
    """The path a CPU whose kernels fail the row probe takes (forced here, whatever this CPU does)."""
    convos = [(("user", q),) for q in QUESTIONS]
    alone = [llm.chat([c], TOKENS)[0] for c in convos]
    saved = llm.batch_rows
    try:
        llm.batch_rows = 1
        assert llm.chat(convos, TOKENS) == alone
    finally:
        llm.batch_rows = saved
    assert llm.batch_rows == (llm.max_batch if llm.rows_independent else 1)


def test_local_and_http_server_answers_are_identical(llm, index):
    local = ask(index, QUESTIONS, small(llm="local"))
    with ServerThread(local_llm_app(llm, embeddings=False)) as server:
        remote = ask(index, QUESTIONS, small(llm="openai", base_url=server.base_url, max_in_flight=3))
        assert server.app[STATS].requests == len(QUESTIONS)
    assert [a.answer for a in remote] == [a.answer for a in local]
    assert all(a.answer for a in local) and [a.question for a in remote] == QUESTIONS
    assert [[h.chunk_id for h in a.hits] for a in remote] == [[h.chunk_id for h in a.hits] for a in local]


def echo_batch(questions: list[str]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({"qid": pa.array(range(len(questions)), pa.int64()),
                                       "question": questions, "contexts": [["ctx"]] * len(questions)})


def echo_operator(base_url: str, **kw) -> GenerateOperator:
    op = GenerateOperator(backend="openai", base_url=base_url, template="{question} {context}", max_new_tokens=64, **kw)
    op.open()
    return op


def expected_echo(op: GenerateOperator, batch: pa.RecordBatch) -> list[str]:
    return [EchoChat().answer(ChatRequest("m", c, 64)).content for c in op.conversations(batch)]


def test_answers_keep_question_order_under_concurrency():
    # longer questions take longer on EchoChat (it sleeps per token), so responses finish out of order
    questions = [" ".join(f"w{i}" for _ in range(40 - 3 * (i % 10))) + f" q{i}" for i in range(24)]
    app = create_app(chat=EchoChat(tokens_per_s=400), max_batch=1)
    with ServerThread(app) as server:
        op = echo_operator(server.base_url, max_in_flight=6)
        try:
            batch = echo_batch(questions)
            answers = op.process(batch).column("answer").to_pylist()
            assert answers == expected_echo(op, batch)
            assert len(set(answers)) == len(questions)
            assert 1 < app[STATS].max_in_flight <= 6
        finally:
            op.close()


def test_429_then_200_is_retried_with_retry_after():
    app = create_app(chat=EchoChat())
    fault = inject(app, FailFirst(count=1, status=429, retry_after_s=0.05))
    with ServerThread(app) as server:
        op = echo_operator(server.base_url)
        try:
            batch = echo_batch(["why retry"])
            assert op.process(batch).column("answer").to_pylist() == expected_echo(op, batch)
        finally:
            op.close()
    assert fault.injected == 1 and op.usage.requests == 2 and op.usage.rejections == 1


def test_persistent_5xx_fails_naming_the_question():
    app = create_app(chat=EchoChat())
    inject(app, FailFirst(count=100, status=503))
    with ServerThread(app) as server:
        op = echo_operator(server.base_url, attempts=2)
        try:
            with pytest.raises(RemoteCallError, match="question 0: 'never answered'") as info:
                op.process(echo_batch(["never answered"]))
        finally:
            op.close()
    assert info.value.attempts == 2


def post(url: str, data: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_bad_requests_get_4xx_with_openai_style_message(llm):
    with ServerThread(local_llm_app(llm, embeddings=False)) as server:
        url = server.base_url + "/chat/completions"
        status, body = post(url, b"{not json")
        assert status == 400 and "not valid JSON" in body["error"]["message"]
        status, body = post(url, json.dumps({"model": "m", "messages": [{"role": "user", "content": 3}]}).encode())
        assert status == 400 and body["error"]["param"] == "messages[0].content"
        assert body["error"]["type"] == "invalid_request_error" and "string" in body["error"]["message"]
        op = GenerateOperator(backend="openai", base_url=server.base_url, model="", max_new_tokens=4)
        op.open()
        try:  # a 4xx is not retried: one attempt, and the server's message reaches the user
            with pytest.raises(RemoteCallError, match="'model' is required") as info:
                op.process(echo_batch(["q"]))
        finally:
            op.close()
        assert info.value.attempts == 1 and server.app[STATS].requests == 3


def test_prompt_template_reaches_the_model(llm):
    text = render_prompt("{context}\nQ: {question}", "why?", ["first", "second"])
    assert text == "[1] first\n\n[2] second\nQ: why?"
    assert llm.encode([("user", text)])[-3:] == llm.encode([("user", "x")])[-3:]  # same assistant header
