"""Embedders over an OpenAI-compatible `/v1/embeddings` endpoint (the remote twin of `models.embedding`).

Requests ask for base64 vectors, decoded straight into one float32 matrix (no Python float
lists). The remote client retries what is transient (429 after the server's Retry-After,
5xx, timeouts, connection resets, malformed responses) and paces requests by the endpoint's
limits. Request composition depends only on the input (consecutive `batch_size` slices) and
a retry resends the same bytes, so the vectors do not depend on which faults happened or
when. After the last attempt each text's error names it (RemoteCallError), and
`return_exceptions=True` hands back the good vectors beside the failures.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from aaflow_core.remote.client import RemoteClient, shared_client
from aaflow_core.remote.config import Endpoint, Limits, Retries
from aaflow_core.remote.usage import Usage


class RemoteEmbedder:
    """`embed(texts) -> (n, dim) float32` against an endpoint; a context manager owning its client."""

    def __init__(self, *, base_url: str | None, model: str, batch_size: int = 64, max_in_flight: int = 64,
                 attempts: int = 5, timeout_s: float = 30.0, api_key_env: str = "OPENAI_API_KEY",
                 rpm: float | None = None, tpm: float | None = None, retries: Retries | None = None) -> None:
        self.endpoint = Endpoint.of(base_url, api_key_env=api_key_env, timeout_s=timeout_s,
                                    limits=Limits(max_in_flight=max_in_flight, rpm=rpm, tpm=tpm),
                                    retries=retries or Retries(attempts=attempts))
        self.model = model
        self.batch_size = batch_size
        self._client = RemoteClient(name="aaflow-remote-embed")

    async def aembed(self, texts: Sequence[str], *, return_exceptions: bool = False) -> Any:
        """The matrix, in input order; with `return_exceptions`, a list of rows and RemoteCallErrors."""
        return await self._client.embed_texts(self.endpoint, list(texts), model=self.model, batch_size=self.batch_size,
                                              return_exceptions=return_exceptions,
                                              describe=lambda i: f"text {texts[i][:60]!r}")

    def embed(self, texts: Sequence[str], *, return_exceptions: bool = False) -> Any:
        """Synchronous `aembed` on the client's own event loop."""
        return self._client.run(self.aembed(texts, return_exceptions=return_exceptions))

    @property
    def usage(self) -> Usage:
        """Requests, retries, rejections and tokens so far (a snapshot)."""
        return next(iter(self._client.usage(self.endpoint).values()), Usage(self.endpoint.base_url))

    def __enter__(self) -> "RemoteEmbedder":
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()


@dataclass(frozen=True)
class RemoteMode:
    """What the manifest's `embed_mode` says for an endpoint (the local modes' `to_dict` shape)."""

    model: str
    endpoint: str

    def to_dict(self) -> dict[str, Any]:
        return {"label": f"remote:{self.model}", "endpoint": self.endpoint, "fallback": None}


class EndpointEmbedder:
    """The local `Embedder`'s interface (`encode`, `dim`, `path`, `mode`) over an endpoint, on the shared client.

    `encode` sends every `batch_size` slice at once (the endpoint's limiter paces them); `dim`
    is what the endpoint returned (probed with one short text if asked before any encode).
    """

    def __init__(self, base_url: str, model: str, rpm: float | None = None, tpm: float | None = None) -> None:
        self.endpoint = Endpoint.of(base_url, limits=Limits(rpm=rpm, tpm=tpm))
        self.path = model  # the manifest's "model"
        self.mode = RemoteMode(model, self.endpoint.base_url)
        self._dim: int | None = None
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        client = shared_client()
        matrix = client.run(client.embed_texts(self.endpoint, list(texts), model=self.path, batch_size=batch_size,
                                               describe=lambda i: f"chunk {texts[i][:60]!r}"))
        with self._lock:
            self._dim = self._dim or int(matrix.shape[1])
        return matrix

    @property
    def dim(self) -> int:
        if self._dim is None:
            self.encode(["dimension probe"], 1)
        assert self._dim is not None
        return self._dim

    @property
    def usage(self) -> Usage:
        return next(iter(shared_client().usage(self.endpoint).values()), Usage(self.endpoint.base_url))


@lru_cache(maxsize=4)
def endpoint_embedder(base_url: str, model: str, rpm: float | None = None, tpm: float | None = None) -> EndpointEmbedder:
    """One per process and endpoint configuration, as `shared_embedder` is for local models."""
    return EndpointEmbedder(base_url, model, rpm, tpm)


__all__ = ["EndpointEmbedder", "RemoteEmbedder", "RemoteMode", "endpoint_embedder"]
