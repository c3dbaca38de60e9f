"""The embedded SmolLM2 behind /v1/chat/completions: each server-side batch is one `LocalLLM.chat` call."""
from __future__ import annotations

import asyncio

from aiohttp import web

from aaflow_core.models.llm import LocalLLM, shared_llm
from aaflow_core.serve.app import create_app
from aaflow_core.serve.auth import ApiKeys
from aaflow_core.serve.backends import ChatRequest, ChatResult, ModelEmbeddings
from aaflow_core.serve.limits import ServeLimits


class LocalLLMChat:
    """ChatBackend over the local model. Greedy whatever `temperature` says: answers are reproducible,
    and equal to the in-process `--llm local` path for the same prompt (see models/llm.py)."""

    def __init__(self, llm: LocalLLM | None = None, *, default_max_tokens: int = 64, threads: int | None = None) -> None:
        self.llm = llm if llm is not None else shared_llm(None, threads)
        self.default_max_tokens = default_max_tokens
        self.context_tokens = int(self.llm.model.config.max_position_embeddings)
        self._lock = asyncio.Lock()  # batches run one at a time: a forward pass already uses every thread

    async def count_prompt_tokens(self, messages: tuple[tuple[str, str], ...]) -> int:
        """The prompt as the model sees it (chat template included); off the loop, as long prompts take a while."""
        return len(await asyncio.to_thread(self.llm.encode, messages))

    async def complete(self, requests: list[ChatRequest]) -> list[ChatResult]:
        limits = [r.max_tokens or self.default_max_tokens for r in requests]
        async with self._lock:
            done = await asyncio.to_thread(self.llm.chat, [r.messages for r in requests], limits)
        return [ChatResult(c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason) for c in done]


def local_llm_app(llm: LocalLLM, *, embeddings: bool = True, embed_threads: int = 1, max_batch: int = 8,
                  default_max_tokens: int = 64, keys: ApiKeys | None = None,
                  limits: ServeLimits = ServeLimits()) -> web.Application:
    """The `aaflow serve-llm` application: local chat, and the bundled embedding model unless told not to.

    `max_batch` requests are served at once (one decode batch); the rest wait in the bounded queue."""
    chat = LocalLLMChat(llm, default_max_tokens=default_max_tokens)
    embed = ModelEmbeddings(threads=embed_threads) if embeddings else None
    return create_app(chat=chat, embeddings=embed, max_batch=max_batch, max_concurrency=max_batch, keys=keys,
                      limits=limits)
