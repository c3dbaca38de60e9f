"""The served SmolLM2's limits come from the real model: its context and its own token count of the prompt.

Nothing is decoded (every request here is refused before it queues), so only the model load costs;
the model is the one test_generate.py loads (`shared_llm(None, 1)`), shared within a session.
"""
from __future__ import annotations

import openai
import pytest

from aaflow_core.models.llm import shared_llm
from aaflow_core.serve import STATS, ServerThread
from aaflow_core.serve.local_llm import local_llm_app

MESSAGES = [("system", "Answer briefly."), ("user", "What does shlex.split do?")]


@pytest.fixture(scope="module")
def llm():
    return shared_llm(None, 1)


def test_max_tokens_cap_is_the_real_context_minus_the_templated_prompt(llm):
    context = llm.model.config.max_position_embeddings
    cap = context - len(llm.encode(MESSAGES))
    assert 0 < cap < context - 10  # the chat template adds tokens beyond the words
    with ServerThread(local_llm_app(llm, embeddings=False)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        assert client.models.list().model_extra["max_concurrency"] == 8
        msgs = [{"role": r, "content": c} for r, c in MESSAGES]
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="m", messages=msgs, max_tokens=1_000_000)
        assert info.value.body["param"] == "max_tokens" and f"at most {cap} " in info.value.body["message"]
        assert f"context of {context} tokens" in info.value.body["message"]
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="m", messages=msgs, max_tokens=cap + 1)
        assert f"is {cap + 1}; at most {cap} " in info.value.body["message"]
        long = [{"role": "user", "content": "json " * context}]
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="m", messages=long, max_tokens=1)
        assert info.value.body["param"] == "messages" and f"context is {context} tokens" in info.value.body["message"]
        assert server.app[STATS].in_flight == 0 and server.app[STATS].max_in_flight == 0  # none reached the model
