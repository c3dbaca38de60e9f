"""Remote embeddings: an OpenAI-compatible `/v1/embeddings` endpoint behind aaflow's AsyncBatcher.

Requests ask for base64 vectors, decoded straight into one float32 matrix (no Python float
lists). The batcher retries what is transient: 429 (honouring Retry-After), 5xx, timeouts,
connection resets and malformed responses, with bounded exponential backoff and jitter.
Request composition depends only on the input (no deadline) and a retry resends the same
texts, so the vectors do not depend on which faults happened or when: jitter moves time,
never results. After the last attempt each text's error names it (RemoteCallError), and
`return_exceptions=True` hands back the good vectors beside the failures.
"""
from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from aaflow_core.concurrency import AsyncBatcher, BatchPolicy, LoopThread, RetryPolicy
from aaflow_core.errors import ConfigError, MalformedResponseError, RemoteCallError
from aaflow_core.operators.generate import openai_retryable, retry_after_s


def decode(response: Any, count: int) -> np.ndarray:
    """A (count, dim) float32 matrix from a base64 embeddings response, or MalformedResponse saying why."""
    data = getattr(response, "data", None)
    if not isinstance(data, list) or len(data) != count:
        raise MalformedResponseError(f"expected {count} embeddings, got {type(data).__name__} "
                                f"{len(data) if isinstance(data, list) else ''}".strip())
    try:
        rows = [base64.b64decode(item.embedding, validate=True) for item in sorted(data, key=lambda d: d.index)]
    except (AttributeError, TypeError, binascii.Error) as exc:
        raise MalformedResponseError(f"embedding is not base64 float32: {exc}") from None
    if not rows[0] or len(rows[0]) % 4 or any(len(r) != len(rows[0]) for r in rows):
        raise MalformedResponseError("embeddings differ in length or are not float32")
    return np.frombuffer(b"".join(rows), dtype="<f4").reshape(count, -1)


class RemoteEmbedder:
    """`embed(texts) -> (n, dim) float32` against an endpoint; a context manager owning its loop."""

    def __init__(self, *, base_url: str | None, model: str, batch_size: int = 64, max_in_flight: int = 4,
                 attempts: int = 5, timeout_s: float = 30.0, api_key_env: str = "OPENAI_API_KEY",
                 retry: RetryPolicy | None = None) -> None:
        if timeout_s <= 0:
            raise ConfigError("timeout_s", timeout_s, "must be > 0")
        key = os.environ.get(api_key_env)
        if key is None and base_url is None:
            raise ConfigError(api_key_env, None, "set it in the environment (or give base_url of a local server)")
        self.base_url, self.model, self.key, self.timeout_s = base_url, model, key or "unused", timeout_s
        self.policy = BatchPolicy(max_batch_size=batch_size, max_in_flight=max_in_flight)
        self.retry = retry or RetryPolicy(attempts=attempts, retry_on=openai_retryable)
        self._client: Any = None
        self._loop: LoopThread | None = None
        self.stats: list[Any] = []  # one BatcherStats per embed call: counted attempts

    async def _call(self, texts: list[str]) -> list[np.ndarray]:
        if self._client is None:  # the client belongs to the loop that uses it
            import openai

            self._client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self.key, max_retries=0,
                                              timeout=self.timeout_s)
        try:
            response = await self._client.embeddings.create(model=self.model, input=texts, encoding_format="base64")
        except Exception as exc:
            exc.retry_after = retry_after_s(exc)  # type: ignore[attr-defined]  # read by RetryPolicy
            raise
        return list(decode(response, len(texts)))

    async def aembed(self, texts: Sequence[str], *, return_exceptions: bool = False) -> Any:
        """The matrix, in input order; with `return_exceptions`, a list of rows and RemoteCallErrors."""
        batcher: AsyncBatcher[str, np.ndarray] = AsyncBatcher(self._call, self.policy, self.retry,
                                                              describe=lambda t: f"text {t[:60]!r}")
        self.stats.append(batcher.stats)
        results = await batcher.map(list(texts), return_exceptions=return_exceptions)
        if return_exceptions:
            return results
        return np.stack(results) if results else np.zeros((0, 0), np.float32)  # type: ignore[arg-type]

    def embed(self, texts: Sequence[str], *, return_exceptions: bool = False) -> Any:
        """Synchronous `aembed` on the embedder's own event loop."""
        if self._loop is None:
            self._loop = LoopThread("aaflow-remote-embed").__enter__()
        return self._loop.run(self.aembed(texts, return_exceptions=return_exceptions))

    def __enter__(self) -> "RemoteEmbedder":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            if self._client is not None:
                self._loop.run(self._client.close())
            self._loop.__exit__(None, None, None)
            self._loop, self._client = None, None


__all__ = ["MalformedResponseError", "RemoteCallError", "RemoteEmbedder", "decode"]
