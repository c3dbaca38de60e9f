"""The core remote client against real servers on 127.0.0.1: answers, faults, errors, rate limits."""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import openai
import pytest
from aiohttp import web

from aaflow_core.errors import RemoteCallError
from aaflow_core.remote import Endpoint, Limits, RemoteClient, Retries, openai_error
from aaflow_core.serve import EchoChat, HashEmbeddings, ServerThread, create_app
from aaflow_core.serve.limits import error_response
from aaflow_core.serve.faults import FAULT_KINDS, Fault, script
from aaflow_core.serve.ratelimit import rate_limit

TEXTS = [f"text number {i} about topic {i % 3}" for i in range(10)]
FAST = Retries(attempts=4, initial_s=0.01, max_s=0.2, jitter_s=0.01)
HASH = HashEmbeddings(dim=16)


def endpoint(url: str, **kwargs) -> Endpoint:
    kwargs.setdefault("retries", FAST)
    kwargs.setdefault("api_key", "sk-test")
    return Endpoint.of(url, **kwargs)


def chat_payload(i: int) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": f"question {i} with words"}], "max_tokens": 8}


@pytest.fixture
def client():
    with RemoteClient() as c:
        yield c


@pytest.fixture(scope="module")
def server():
    with ServerThread(create_app(chat=EchoChat(), embeddings=HASH)) as srv:
        yield srv


def test_chat_and_embeddings_answers_are_the_servers(client, server):
    ep = endpoint(server.base_url)
    body = client.run(client.chat(ep, chat_payload(1)))
    assert body["choices"][0]["message"]["content"] == "echo: question 1 with words"
    matrix = client.run(client.embed_texts(ep, TEXTS, model="m", batch_size=3))
    assert matrix.dtype == np.float32 and matrix.shape == (10, 16)
    np.testing.assert_array_equal(matrix, np.stack([HASH.vector(t) for t in TEXTS]))  # bit-exact
    usage = client.usage(ep)[server.base_url]
    assert usage.requests == 5 and usage.retries == 0 and usage.prompt_tokens > 0 and usage.completion_tokens > 0


def test_any_event_loop_and_threads_share_one_client(client, server):
    ep = endpoint(server.base_url)

    async def answers() -> list[str]:
        bodies = await asyncio.gather(*(client.chat(ep, chat_payload(i)) for i in range(20)))
        return [b["choices"][0]["message"]["content"] for b in bodies]

    first = asyncio.run(answers())
    assert asyncio.run(answers()) == first  # a second loop in one process works (stock openai's does not)
    out: list[list[str]] = []
    worker = threading.Thread(target=lambda: out.append(asyncio.run(answers())))
    worker.start()
    worker.join()
    assert out == [first] and first == [f"echo: question {i} with words" for i in range(20)]


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_is_retried_and_outputs_are_unchanged(client, kind):
    app = create_app(chat=EchoChat(), embeddings=HASH)
    faults = [Fault(kind, status=503, retry_after_s=0.05, stall_s=1.0)] * 2
    plan = script(app, faults, "/embeddings")
    chat_plan = script(app, faults, "/chat/completions")
    with ServerThread(app) as srv:
        ep = endpoint(srv.base_url, timeout_s=0.5)
        matrix = client.run(client.embed_texts(ep, TEXTS, model="m", batch_size=4))
        body = client.run(client.chat(ep, chat_payload(7)))
    np.testing.assert_array_equal(matrix, np.stack([HASH.vector(t) for t in TEXTS]))
    assert body["choices"][0]["message"]["content"] == "echo: question 7 with words"
    assert plan.seen.count(kind) == 2 and chat_plan.seen.count(kind) == 2
    usage = client.usage(ep)[srv.base_url]
    assert usage.retries == 4 and usage.failed == 0
    assert usage.rejections == (4 if kind == "429" else 0)


def test_last_retry_fails_naming_the_item_and_keeps_the_rest(client):
    app = create_app(embeddings=HASH)
    script(app, [Fault("5xx", status=502)] * 50, "/embeddings")
    with ServerThread(app) as srv:
        ep = endpoint(srv.base_url)
        with pytest.raises(RemoteCallError, match=r"text 0 'text number 0.*failed after 4 attempt.*502"):
            client.run(client.embed(ep, {"model": "m", "input": TEXTS[:2]}, item="text 0 'text number 0'"))


def test_400_is_not_retried_and_names_the_item_while_other_batches_survive(client, server):
    ep = endpoint(server.base_url)
    texts = TEXTS[:4] + [""] + TEXTS[5:]  # the server refuses empty input: one batch of three fails
    out = client.run(client.embed_texts(ep, texts, model="m", batch_size=3, return_exceptions=True))
    failed = [i for i, r in enumerate(out) if isinstance(r, RemoteCallError)]
    assert failed == [3, 4, 5]
    assert "text 4 ''" in str(out[4]) and "HTTP 400" in str(out[4]) and out[4].attempts == 1
    for i in (0, 1, 2, 6, 7, 8, 9):
        np.testing.assert_array_equal(out[i], HASH.vector(texts[i]))


def test_401_and_a_wrong_url_give_clear_errors(client):
    @web.middleware
    async def auth(request: web.Request, handler):  # noqa: ANN001, ANN202
        if request.headers.get("Authorization") != "Bearer right":
            return error_response(401, "Incorrect API key provided", kind="invalid_request_error", code="invalid_api_key")
        return await handler(request)

    app = create_app(chat=EchoChat())
    app.middlewares.append(auth)
    with ServerThread(app) as srv:
        with pytest.raises(RemoteCallError, match=r"question 1 .*HTTP 401: Incorrect API key") as err:
            client.run(client.chat(endpoint(srv.base_url), chat_payload(1)))
        assert err.value.attempts == 1
        assert isinstance(openai_error(err.value), openai.AuthenticationError)  # what stock's client raises
        with pytest.raises(RemoteCallError, match=r"HTTP 404.*check the base URL"):
            client.run(client.chat(endpoint(srv.base_url.removesuffix("/v1"), api_key="right"), chat_payload(1)))
    with pytest.raises(RemoteCallError, match=r"chat request 'question 2.*127.0.0.1:9/v1/chat/completions.*4 attempt") as dead:
        client.run(client.chat(endpoint("http://127.0.0.1:9/v1"), chat_payload(2)))
    assert isinstance(openai_error(dead.value), openai.APIConnectionError)


def test_rate_limited_endpoint_answers_every_request_correctly(client):
    app = create_app(chat=EchoChat(), latency_s=0.01)
    gate = rate_limit(app, limit=10, window_s=0.25)
    with ServerThread(app) as srv:
        ep = endpoint(srv.base_url, limits=Limits(max_in_flight=32), retries=Retries(rate_limited=200))

        async def all_answers() -> list[str]:
            bodies = await asyncio.gather(*(client.chat(ep, chat_payload(i)) for i in range(60)))
            return [b["choices"][0]["message"]["content"] for b in bodies]

        answers = asyncio.run(all_answers())
    assert answers == [f"echo: question {i} with words" for i in range(60)]
    usage = client.usage(ep)[srv.base_url]
    assert gate.admitted == 60 and usage.rejections == gate.rejected and usage.failed == 0
    assert gate.rejected <= 60  # headers pace the client: rejections stay well below the requests


def test_a_later_call_with_other_limits_and_timeout_uses_them(client):
    from aaflow_core.serve import STATS

    app = create_app(chat=EchoChat(), latency_s=0.3)
    with ServerThread(app) as srv:
        narrow = endpoint(srv.base_url, limits=Limits(max_in_flight=2))
        wide = endpoint(srv.base_url, limits=Limits(max_in_flight=8, initial_in_flight=8))
        assert narrow.key == wide.key  # one session, one limiter

        async def batch(ep: Endpoint) -> list[str]:
            bodies = await asyncio.gather(*(client.chat(ep, chat_payload(i)) for i in range(8)))
            return [b["choices"][0]["message"]["content"] for b in bodies]

        assert asyncio.run(batch(narrow)) == [f"echo: question {i} with words" for i in range(8)]
        assert app[STATS].max_in_flight <= 2
        app[STATS].max_in_flight = 0
        asyncio.run(batch(wide))
        assert app[STATS].max_in_flight > 2  # the wider limits apply (8 sent at once, 0.3 s each)
        hasty = endpoint(srv.base_url, timeout_s=0.03, retries=Retries(attempts=1))
        with pytest.raises(RemoteCallError, match="timed out|Timeout"):
            client.run(client.chat(hasty, chat_payload(0)))  # this call's own timeout, not the session's


def test_coroutines_on_the_clients_own_loop_need_no_hop(client, server):
    ep = endpoint(server.base_url)
    loop = client.loop()
    assert client.loop() is loop and loop.is_running()

    async def there() -> tuple[bool, str]:
        body = await client.chat(ep, chat_payload(3))
        return asyncio.get_running_loop() is loop, body["choices"][0]["message"]["content"]

    assert asyncio.run_coroutine_threadsafe(there(), loop).result(timeout=30) == (True, "echo: question 3 with words")
