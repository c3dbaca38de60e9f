"""What sits behind the endpoints: chat and embedding backends, each called with a whole batch."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[tuple[str, str], ...]  # (role, content)
    max_tokens: int | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class ChatResult:
    content: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"


class ChatBackend(Protocol):
    async def complete(self, requests: list[ChatRequest]) -> list[ChatResult]:
        """One result per request, in order; called with server-side batches."""
        ...


class EmbeddingsBackend(Protocol):
    async def embed(self, texts: list[str]) -> np.ndarray:
        """A float32 (len(texts), dim) matrix, rows in input order."""
        ...


class EchoChat:
    """Deterministic answers that depend only on the messages, with simulated decode speed.

    The answer repeats the last user message's words (up to `max_tokens`), so two clients
    sending the same prompts must receive the same answers: equality tests and benchmarks of
    orchestration need exactly that, and nothing of a real model's cost.
    """

    def __init__(self, tokens_per_s: float | None = None, default_max_tokens: int = 32,
                 context_tokens: int = 8192) -> None:
        self.tokens_per_s = tokens_per_s
        self.default_max_tokens = default_max_tokens
        self.context_tokens = context_tokens  # in words, the echo model's tokens

    async def count_prompt_tokens(self, messages: tuple[tuple[str, str], ...]) -> int:
        return sum(len(c.split()) for _, c in messages)

    def answer(self, request: ChatRequest) -> ChatResult:
        last_user = next((c for r, c in reversed(request.messages) if r == "user"), "")
        limit = request.max_tokens or self.default_max_tokens
        words = last_user.split()
        reply = words[:limit]
        prompt_tokens = sum(len(c.split()) for _, c in request.messages)
        finish = "length" if len(words) > limit else "stop"
        return ChatResult("echo: " + " ".join(reply), prompt_tokens, len(reply) + 1, finish)

    async def complete(self, requests: list[ChatRequest]) -> list[ChatResult]:
        results = [self.answer(r) for r in requests]
        if self.tokens_per_s:
            await asyncio.sleep(max(r.completion_tokens for r in results) / self.tokens_per_s)
        return results


class ModelEmbeddings:
    """The bundled sentence-transformers model (or another local one) behind /v1/embeddings."""

    def __init__(self, model: str | None = None, threads: int = 1, batch_size: int = 32) -> None:
        from aaflow_core.operators.embed import shared_embedder

        self.embedder: Any = shared_embedder(model, threads)
        self.batch_size = batch_size
        self._lock = asyncio.Lock()

    async def embed(self, texts: list[str]) -> np.ndarray:
        async with self._lock:  # one forward pass at a time: the model already uses every thread
            return await asyncio.to_thread(self.embedder.encode, texts, self.batch_size)


class HashEmbeddings:
    """Deterministic vectors from each text's SHA-256 (no model), with `item_s` of service time per text.

    What remote-path tests and benchmarks need: a vector that depends on the text alone, so
    two clients can be compared bit for bit, at the cost a hosted endpoint charges per item.
    """

    def __init__(self, dim: int = 64, item_s: float = 0.0) -> None:
        self.dim = dim
        self.item_s = item_s

    def vector(self, text: str) -> np.ndarray:
        import hashlib

        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        return np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)

    async def embed(self, texts: list[str]) -> np.ndarray:
        if self.item_s:
            await asyncio.sleep(self.item_s * len(texts))
        return np.stack([self.vector(t) for t in texts])
