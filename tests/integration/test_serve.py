"""The OpenAI-compatible server over real HTTP on 127.0.0.1, driven by the real openai client."""
from __future__ import annotations

import asyncio

import numpy as np
import openai
import pytest

from aaflow_core.serve import STATS, EchoChat, ModelEmbeddings, ServerThread, create_app


@pytest.fixture(scope="module")
def server(embedder):
    app = create_app(chat=EchoChat(), embeddings=ModelEmbeddings(threads=2), max_concurrency=8)
    with ServerThread(app) as s:
        yield s


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)


def test_chat_answer_depends_only_on_messages(server):
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is a deque"}]
    a = client(server).chat.completions.create(model="m", messages=msgs)
    b = client(server).chat.completions.create(model="other", messages=msgs)
    assert a.choices[0].message.content == b.choices[0].message.content == "echo: what is a deque"
    assert a.usage.prompt_tokens == 6


def test_embeddings_equal_local_model_bits(server, embedder):
    texts = ["a deque is a double-ended queue", "json.dumps serializes objects"]
    got = client(server).embeddings.create(model="m", input=texts)  # the client asks for base64
    matrix = np.array([d.embedding for d in got.data], dtype=np.float32)
    np.testing.assert_array_equal(matrix, embedder.encode(texts, 32))


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": -3}, "max_tokens"),
    ],
)
def test_malformed_chat_request_gets_openai_style_400(server, body, param):
    with pytest.raises(openai.BadRequestError) as info:
        client(server).post("/chat/completions", body=body, cast_to=dict)
    assert info.value.status_code == 400
    assert info.value.body["param"] == param and info.value.body["type"] == "invalid_request_error"


def test_concurrent_requests_are_capped_and_answered_in_order(server):
    async def main() -> list[str]:
        c = openai.AsyncOpenAI(base_url=server.base_url, api_key="t", max_retries=0)
        calls = [c.chat.completions.create(model="m", messages=[{"role": "user", "content": f"q{i}"}]) for i in range(40)]
        return [r.choices[0].message.content for r in await asyncio.gather(*calls)]

    answers = asyncio.run(main())
    assert answers == [f"echo: q{i}" for i in range(40)]
    assert 1 <= server.app[STATS].max_in_flight <= 8
