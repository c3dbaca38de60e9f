"""Generate: question + retrieved passages -> an `answer` column, from a local or remote chat model.

Backends:
- `local`: the embedded SmolLM2 (models/llm.py), batched greedy decoding in this process;
- `openai`: any OpenAI-compatible endpoint through `aaflow_core.remote`: at most
  `max_in_flight` requests at once under the endpoint's limiter, retries on 429 (after the
  server's Retry-After), 5xx, timeouts, resets and malformed bodies, answers in question
  order whatever order the responses arrive in.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pyarrow as pa

from aaflow_core.errors import ConfigError
from aaflow_core.models.llm import DEFAULT_TEMPLATE, LocalLLM, check_template, render_prompt, shared_llm
from aaflow_core.operators.base import Operator
from aaflow_core.remote import Endpoint, Limits, RemoteClient, Retries, Usage

LLM_BACKENDS = ("local", "openai")
Conversation = tuple[tuple[str, str], ...]


class OpenAIChat:
    """Chat completions against an OpenAI-compatible endpoint through `aaflow_core.remote`; one request each."""

    def __init__(self, *, base_url: str | None, model: str, api_key_env: str = "OPENAI_API_KEY",
                 timeout_s: float = 60.0, max_in_flight: int = 8, attempts: int = 5) -> None:
        self.endpoint = Endpoint.of(base_url, api_key_env=api_key_env, timeout_s=timeout_s,
                                    limits=Limits(max_in_flight=max_in_flight), retries=Retries(attempts=attempts))
        self.client = RemoteClient(name="aaflow-generate")
        self.model = model

    async def one(self, label: str, messages: Conversation, max_tokens: int) -> str:
        payload = {"model": self.model, "messages": [{"role": r, "content": c} for r, c in messages],
                   "max_tokens": max_tokens, "temperature": 0}
        body = await self.client.chat(self.endpoint, payload, item=label)
        content = body["choices"][0]["message"].get("content")
        return (content or "").strip()

    def complete(self, items: Sequence[tuple[str, Conversation, int]]) -> list[str]:
        """Items are (label, messages, max_tokens), all in flight under the endpoint's limiter; answers in order."""
        async def every() -> list[str]:
            return list(await asyncio.gather(*(self.one(*item) for item in items)))

        return self.client.run(every())

    @property
    def usage(self) -> Usage:
        return next(iter(self.client.usage(self.endpoint).values()), Usage(self.endpoint.base_url))

    def close(self) -> None:
        self.client.close()


class GenerateOperator(Operator):
    kind = "generate"
    reads = ("qid", "question", "contexts")

    def __init__(self, name: str | None = None, *, backend: str = "local", model: str | None = None,
                 base_url: str | None = None, template: str = DEFAULT_TEMPLATE, max_new_tokens: int = 64,
                 max_in_flight: int = 8, attempts: int = 5, threads: int | None = None,
                 timeout_s: float = 60.0) -> None:
        super().__init__(name)
        if backend not in LLM_BACKENDS:
            raise ConfigError("backend", backend, f"must be one of {', '.join(LLM_BACKENDS)}")
        self.backend = backend
        self.model_name = model
        self.base_url = base_url
        self.template = check_template(template)
        self.max_new_tokens = max_new_tokens
        self.max_in_flight = max_in_flight
        self.attempts = attempts
        self.threads = threads
        self.timeout_s = timeout_s
        self.llm: LocalLLM | None = None
        self._remote: OpenAIChat | None = None

    def open(self) -> None:
        if self.backend == "local":
            self.llm = shared_llm(self.model_name, self.threads)
            return
        self._remote = OpenAIChat(base_url=self.base_url, model=self.model_name if self.model_name is not None else "aaflow",
                                  timeout_s=self.timeout_s, max_in_flight=self.max_in_flight, attempts=self.attempts)

    def close(self) -> None:
        if self._remote is not None:
            self._remote.close()

    @property
    def usage(self) -> Usage | None:
        """The remote backend's requests, retries, rejections and tokens (None for the local model)."""
        return self._remote.usage if self._remote is not None else None

    def conversations(self, batch: pa.RecordBatch) -> list[Conversation]:
        """One user message per row: the template over the row's passages and question."""
        questions = batch.column("question").to_pylist()
        contexts = batch.column("contexts").to_pylist()
        return [(("user", render_prompt(self.template, q, c or [])),) for q, c in zip(questions, contexts)]

    def answer(self, conversations: Sequence[Conversation], labels: Sequence[str]) -> list[str]:
        """Answers in input order; a failed remote request raises RemoteCallError naming its label."""
        if self.backend == "local":
            assert self.llm is not None, "open() first"
            return [c.text for c in self.llm.chat(conversations, self.max_new_tokens)]
        assert self._remote is not None, "open() first"
        return self._remote.complete([(label, c, self.max_new_tokens) for label, c in zip(labels, conversations)])

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        self.check_input(batch)
        convos = self.conversations(batch)
        labels = [f"question {qid}: {q[:60]!r}" for qid, q in zip(batch.column("qid").to_pylist(),
                                                                   batch.column("question").to_pylist())]
        answers = self.answer(convos, labels)
        return batch.append_column("answer", pa.array(answers, pa.string()))
