"""The served API made safe to expose, over real HTTP on 127.0.0.1: keys, limits, the bounded queue, logs.

The echo model stands in for the LLM (its context is counted in words); a held variant answers only
when the test releases it, so queue states are reached by counting, never by timing.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading

import aiohttp
import openai
import pyarrow as pa
import pytest

from aaflow_core.operators.generate import GenerateOperator
from aaflow_core.serve import STATS, EchoChat, ServerThread, create_app
from aaflow_core.serve.auth import ApiKeys, load_keys
from aaflow_core.serve.backends import ChatRequest
from aaflow_core.serve.limits import ServeLimits

KEY, OTHER_KEY = "sk-aaflow-test-0123456789", "sk-aaflow-second-key"
HELLO = [{"role": "user", "content": "what is a deque"}]


class HeldChat(EchoChat):
    """EchoChat that answers a batch only once `released` is set (by the test, from its thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()

    async def complete(self, requests):
        await asyncio.to_thread(self.released.wait)
        return await super().complete(requests)


def chat_client(server: ServerThread, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def keyed():
    with ServerThread(create_app(chat=EchoChat(), keys=ApiKeys([KEY, OTHER_KEY]))) as server:
        yield server


@pytest.mark.parametrize("key", ["", "wrong", KEY + "x", KEY[:-1]])
def test_missing_or_wrong_key_is_401_with_openai_error(keyed, key):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    for path, body in (("/chat/completions", {"model": "m", "messages": HELLO}), ("/models", None)):
        status, answer, got = http(keyed.base_url + path, body, headers)
        assert status == 401 and got["WWW-Authenticate"] == "Bearer"
        assert answer["error"]["code"] == "invalid_api_key" and answer["error"]["type"] == "invalid_request_error"
        assert ("missing" if not key else "incorrect") in answer["error"]["message"]
        assert not key or key not in answer["error"]["message"]
    with pytest.raises(openai.AuthenticationError):
        chat_client(keyed, key or "none").chat.completions.create(model="m", messages=HELLO)


def test_right_key_gets_the_same_answer_as_an_open_server(keyed):
    with ServerThread(create_app(chat=EchoChat())) as open_server:
        expected = chat_client(open_server, "anything").chat.completions.create(model="m", messages=HELLO)
    for key in (KEY, OTHER_KEY):
        got = chat_client(keyed, key).chat.completions.create(model="m", messages=HELLO)
        assert got.choices[0].message.content == expected.choices[0].message.content == "echo: what is a deque"
        assert got.usage == expected.usage
    assert chat_client(keyed).models.list().data[0].id == "aaflow"


def test_health_needs_no_key_and_reports_the_queue(keyed):
    status, body, _ = http(keyed.base_url.removesuffix("/v1") + "/health")
    assert status == 200 and body["status"] == "ok" and body["queue_depth"] == 0


def test_key_file_and_env_keys(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# serve-llm keys\n\n  sk-one  \nsk-two\n")
    keys = load_keys(path, "sk-three, sk-four")
    assert len(keys) == 4 and all(keys.accepts(k) for k in ("sk-one", "sk-two", "sk-three", "sk-four"))
    assert not keys.accepts("sk-on") and not keys.accepts("# serve-llm keys") and not keys.accepts("")
    assert load_keys(None, None) is None and load_keys(None, " , ") is None
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no key"):
        load_keys(empty)
    with pytest.raises(ValueError, match="cannot be read"):
        load_keys(tmp_path / "missing")


@pytest.fixture(scope="module")
def small():
    """Context of 20 (echo) tokens, at most 3 messages, bodies up to 2 KiB."""
    limits = ServeLimits(max_body_bytes=2048, max_messages=3)
    with ServerThread(create_app(chat=EchoChat(context_tokens=20), limits=limits)) as server:
        yield server


def ask(server: ServerThread, **body) -> tuple[int, dict]:
    status, answer, _ = http(server.base_url + "/chat/completions", {"model": "m", **body})
    return status, answer


def test_max_tokens_above_what_the_context_leaves_is_400_naming_the_cap(small):
    prompt = [{"role": "user", "content": "one two three four five"}]  # 5 tokens: 15 left
    status, body = ask(small, messages=prompt, max_tokens=1_000_000)
    assert status == 400 and body["error"]["param"] == "max_tokens"
    assert "at most 15" in body["error"]["message"] and "1000000" in body["error"]["message"]
    status, body = ask(small, messages=prompt, max_completion_tokens=16)
    assert status == 400 and body["error"]["param"] == "max_completion_tokens"
    assert "at most 15" in body["error"]["message"]
    status, body = ask(small, messages=prompt, max_tokens=15)
    assert status == 200 and body["choices"][0]["message"]["content"] == "echo: one two three four five"


def test_server_max_tokens_limit_caps_below_the_context():
    with ServerThread(create_app(chat=EchoChat(), limits=ServeLimits(max_tokens_limit=4))) as server:
        status, body = ask(server, messages=HELLO, max_tokens=5)
        assert status == 400 and body["error"]["param"] == "max_tokens" and "at most 4 " in body["error"]["message"]
        status, body = ask(server, messages=[{"role": "user", "content": "a b c d e f"}])  # default 32 is cut to 4
        assert status == 200 and body["choices"][0]["message"]["content"] == "echo: a b c d"


def test_prompt_longer_than_the_context_is_400_on_messages(small):
    status, body = ask(small, messages=[{"role": "user", "content": "w " * 20}])
    assert status == 400 and body["error"]["param"] == "messages"
    assert "20 tokens" in body["error"]["message"] and "context is 20" in body["error"]["message"]
    long = "a long prompt that leaves two tokens of room for the answer here w x y z q"
    status, body = ask(small, messages=[{"role": "user", "content": long}])  # 18 tokens; default 32 is cut to 2
    assert status == 200 and body["choices"][0]["message"]["content"] == "echo: a long"
    assert body["choices"][0]["finish_reason"] == "length"


def test_too_many_messages_and_oversize_body(small):
    status, body = ask(small, messages=[{"role": "user", "content": "hi"}] * 4)
    assert status == 400 and body["error"]["param"] == "messages" and "at most 3" in body["error"]["message"]
    status, body = ask(small, messages=[{"role": "user", "content": "x" * 4096}])
    assert status == 413 and body["error"]["code"] == "request_too_large"
    assert "request body" in body["error"]["message"] and "2048 bytes" in body["error"]["message"]
    assert small.app[STATS].requests >= 2  # the server is still up and counting


def test_more_requests_than_the_queue_holds_get_429_and_accepted_ones_are_answered():
    chat = HeldChat()
    app = create_app(chat=chat, max_concurrency=2, limits=ServeLimits(max_queue=3))
    with ServerThread(app) as server:
        async def main() -> tuple[list, list, dict, dict]:
            async with aiohttp.ClientSession() as session:
                accepted = [asyncio.ensure_future(post(session, server, f"q{i}")) for i in range(5)]
                state = await until(session, server, lambda h: h["in_flight"] == 2 and h["queue_depth"] == 3)
                overflow = await asyncio.gather(*(post(session, server, f"late{i}") for i in range(6)))
                async with session.get(server.base_url + "/models") as r:
                    listed = await r.json()
                chat.released.set()
                return list(await asyncio.gather(*accepted)), overflow, state, listed

        try:
            accepted, overflow, state, listed = asyncio.run(main())
        finally:
            chat.released.set()
    assert state == {"status": "ok", "queue_depth": 3, "max_queue": 3, "in_flight": 2, "max_concurrency": 2}
    assert listed["queue_depth"] == 3 and listed["in_flight"] == 2 and listed["data"][0]["context_length"] == 8192
    answered = [(s, b["choices"][0]["message"]["content"]) for s, b, _ in accepted]
    assert answered == [(200, f"echo: q{i}") for i in range(5)]
    assert all(s == 429 and b["error"]["type"] == "rate_limit_exceeded" for s, b, _ in overflow)
    assert all(int(h["Retry-After"]) >= 1 for _, _, h in overflow)
    assert app[STATS].rejected == 6 and app[STATS].max_in_flight == 2 and app[STATS].queue_depth == 0


def test_aaflow_remote_layer_backs_off_on_429_and_gets_every_answer():
    app = create_app(chat=EchoChat(tokens_per_s=50), max_concurrency=1, limits=ServeLimits(max_queue=0))
    batch = pa.RecordBatch.from_pydict({"qid": pa.array(range(4), pa.int64()),
                                        "question": [f"question {i}" for i in range(4)], "contexts": [["c"]] * 4})
    with ServerThread(app) as server:
        op = GenerateOperator(backend="openai", base_url=server.base_url, template="{question} {context}",
                              max_new_tokens=8, max_in_flight=2, attempts=8)
        op.open()
        try:
            answers = op.process(batch).column("answer").to_pylist()
        finally:
            op.close()
    assert answers == [EchoChat().answer(ChatRequest("m", c, 8)).content for c in op.conversations(batch)]
    assert len(set(answers)) == 4 and app[STATS].rejected >= 1 and app[STATS].max_in_flight == 1


def test_a_request_past_the_timeout_is_504_and_its_slot_stays_taken_until_the_model_is_done():
    chat = HeldChat()
    app = create_app(chat=chat, max_concurrency=1, limits=ServeLimits(request_timeout_s=0.3))
    with ServerThread(app) as server:
        async def main() -> tuple[list, dict]:
            async with aiohttp.ClientSession() as session:
                served, queued = await asyncio.gather(post(session, server, "slow"), post(session, server, "waits"))
                held = await health(session, server)
                chat.released.set()
                await until(session, server, lambda h: h["in_flight"] == 0)
                return [served, queued], held

        try:
            (served, queued), held = asyncio.run(main())
        finally:
            chat.released.set()
    for status, body, _ in (served, queued):
        assert status == 504 and body["error"]["code"] == "timeout" and "0.3 s" in body["error"]["message"]
    messages = sorted(body["error"]["message"] for _, body, _ in (served, queued))
    assert "not answered within" in messages[0] and "free slot" in messages[1]  # one was served, one waited
    assert held["in_flight"] == 1 and app[STATS].timed_out == 2


def test_access_log_lines_hold_no_prompt_and_no_key(caplog):
    log = logging.getLogger("aaflow.test.access")
    with caplog.at_level(logging.INFO, logger=log.name):
        with ServerThread(create_app(chat=EchoChat(), keys=ApiKeys([KEY])), access_log=log) as server:
            msgs = [{"role": "user", "content": "confidential-prompt-words"}]
            assert chat_client(server).chat.completions.create(model="m", messages=msgs).choices
            with pytest.raises(openai.AuthenticationError):
                chat_client(server, "wrong-key-value").chat.completions.create(model="m", messages=msgs)
    lines = [r.getMessage() for r in caplog.records if r.name == log.name]
    assert any('"POST /v1/chat/completions HTTP/1.1" 200' in line for line in lines)
    assert any('"POST /v1/chat/completions HTTP/1.1" 401' in line for line in lines)
    assert not any("confidential" in line or KEY in line or "wrong-key" in line for line in lines)


# helpers: plain HTTP, so status codes and headers are seen as sent


def http(url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict, dict]:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, json.loads(res.read()), dict(res.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


async def post(session: aiohttp.ClientSession, server: ServerThread, text: str) -> tuple[int, dict, dict]:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    async with session.post(server.base_url + "/chat/completions", json=body) as r:
        return r.status, await r.json(), dict(r.headers)


async def health(session: aiohttp.ClientSession, server: ServerThread) -> dict:
    async with session.get(server.base_url.removesuffix("/v1") + "/health") as r:
        return await r.json()


async def until(session: aiohttp.ClientSession, server: ServerThread, ready) -> dict:
    """Poll /health until `ready(report)`: the state is reached by counting, whatever the timing."""
    for _ in range(2000):
        report = await health(session, server)
        if ready(report):
            return report
        await asyncio.sleep(0.005)
    raise AssertionError(f"server never reached the state; last report {report}")
