"""Generate: question + retrieved passages -> an `answer` column, from a local or remote chat model.

Backends:
- `local`: the embedded SmolLM2 (models/llm.py), batched greedy decoding in this process;
- `openai`: any OpenAI-compatible endpoint through `openai.AsyncOpenAI`, every request through
  the AsyncBatcher: at most `max_in_flight` requests at once, aaflow's RetryPolicy on
  429/5xx/timeouts (honouring Retry-After; the client's own retries are off), answers in
  question order whatever order the responses arrive in.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from aaflow_core.concurrency import AsyncBatcher, BatchPolicy, LoopThread, RetryPolicy, is_retryable
from aaflow_core.errors import ConfigError, MalformedResponseError
from aaflow_core.models.llm import DEFAULT_TEMPLATE, LocalLLM, check_template, render_prompt, shared_llm
from aaflow_core.operators.base import Operator, OperatorResources

BACKENDS = ("local", "openai")
Conversation = tuple[tuple[str, str], ...]


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds from a Retry-After header on an HTTP error response, if any."""
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def openai_retryable(exc: BaseException) -> bool:
    """429/5xx (status on the error), the client's timeout and connection errors, malformed bodies."""
    import openai

    transient = (openai.APIConnectionError, openai.APIResponseValidationError, json.JSONDecodeError)
    return isinstance(exc, transient) or is_retryable(exc)


class OpenAIChat:
    """Chat completions against an OpenAI-compatible endpoint; one request per conversation."""

    def __init__(self, *, base_url: str | None, model: str, api_key_env: str = "OPENAI_API_KEY",
                 timeout_s: float = 60.0) -> None:
        import openai

        key = os.environ.get(api_key_env)
        if key is None and base_url is None:
            raise ConfigError(api_key_env, None, "set it in the environment (or give --base-url of a local server)")
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=key or "unused", max_retries=0, timeout=timeout_s)
        self.model = model

    async def complete(self, batch: list[tuple[str, Conversation, int]]) -> list[str]:
        """Items are (label, messages, max_tokens); the label only names the item in errors."""
        answers = []
        for _, messages, max_tokens in batch:
            try:
                res = await self.client.chat.completions.create(
                    model=self.model, messages=[{"role": r, "content": c} for r, c in messages],  # type: ignore[misc]
                    max_tokens=max_tokens, temperature=0)
            except Exception as exc:
                exc.retry_after = retry_after_s(exc)  # type: ignore[attr-defined]  # read by RetryPolicy
                raise
            try:
                answers.append((res.choices[0].message.content or "").strip())
            except (AttributeError, IndexError, TypeError) as exc:
                raise MalformedResponseError(f"chat response without choices[0].message: {exc}") from None
        return answers

    async def aclose(self) -> None:
        await self.client.close()


class GenerateOperator(Operator):
    kind = "generate"
    reads = ("qid", "question", "contexts")
    writes = ("answer",)
    resources = OperatorResources(threads=1, releases_gil=True)

    def __init__(self, name: str | None = None, *, backend: str = "local", model: str | None = None,
                 base_url: str | None = None, template: str = DEFAULT_TEMPLATE, max_new_tokens: int = 64,
                 max_in_flight: int = 8, attempts: int = 5, threads: int | None = None,
                 timeout_s: float = 60.0) -> None:
        super().__init__(name)
        if backend not in BACKENDS:
            raise ConfigError("backend", backend, f"must be one of {', '.join(BACKENDS)}")
        self.backend = backend
        self.model_name = model
        self.base_url = base_url
        self.template = check_template(template)
        self.max_new_tokens = max_new_tokens
        self.policy = BatchPolicy(max_batch_size=1, max_in_flight=max_in_flight)
        self.retry = RetryPolicy(attempts=attempts, retry_on=openai_retryable)
        self.threads = threads
        self.timeout_s = timeout_s
        self.llm: LocalLLM | None = None
        self._loop: LoopThread | None = None
        self._remote: OpenAIChat | None = None
        self.batcher_stats: list[Any] = []  # one BatcherStats per batch: counted in-flight/attempts

    def open(self) -> None:
        if self.backend == "local":
            self.llm = shared_llm(self.model_name, self.threads)
            return
        self._loop = LoopThread("aaflow-generate").__enter__()

        async def make() -> OpenAIChat:  # the client belongs to the loop that uses it
            return OpenAIChat(base_url=self.base_url, model=self.model_name if self.model_name is not None else "aaflow",
                              timeout_s=self.timeout_s)

        self._remote = self._loop.run(make())

    def close(self) -> None:
        if self._loop is not None:
            if self._remote is not None:
                self._loop.run(self._remote.aclose())
                self._remote = None
            self._loop.__exit__(None, None, None)
            self._loop = None

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
        assert self._loop is not None and self._remote is not None, "open() first"
        items = [(label, c, self.max_new_tokens) for label, c in zip(labels, conversations)]

        async def run() -> list[str]:
            batcher = AsyncBatcher(self._remote.complete, self.policy, self.retry,  # type: ignore[union-attr]
                                   describe=lambda item: item[0])
            self.batcher_stats.append(batcher.stats)
            return await batcher.map(items)  # type: ignore[return-value]

        return self._loop.run(run())

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        self.check_input(batch)
        convos = self.conversations(batch)
        labels = [f"question {qid}: {q[:60]!r}" for qid, q in zip(batch.column("qid").to_pylist(),
                                                                   batch.column("question").to_pylist())]
        answers = self.answer(convos, labels)
        return batch.append_column("answer", pa.array(answers, pa.string()))
