"""Route LlamaIndex's `OpenAIEmbedding` through aaflow's remote client, with stock's outputs.

The run embeds with a private copy of the user's model whose transport, `_aget_text_embeddings`,
sends the request stock would send (same model/engine, `dimensions` and other keyword
arguments, newlines replaced by spaces, the same headers and key) through
`aaflow_core.remote`: one pooled session and one limiter per endpoint, shared by sync `run`
and `arun`, vectors decoded from base64 straight to float32 (the values the openai client
returns, bit for bit). Everything else is stock's own code: `aget_text_embedding_batch`, its
callback and instrumentation events, its embeddings cache. What the lean path does not cover
keeps the integration's own client, and a debug log says why. A call that fails after its last
retry raises the openai exception stock would (`openai.AuthenticationError`, ...).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding

from aaflow_core.remote import Endpoint, Limits, RemoteCallError, Retries, Usage, openai_error, shared_client

log = logging.getLogger(__name__)
PAYLOAD_KEYS = frozenset({"dimensions", "user"})  # request fields the lean path sends as stock does


def fallback_reason(model: BaseEmbedding) -> str | None:
    """Why `model` keeps its own client (None: it can be routed)."""
    try:
        from llama_index.embeddings.openai import OpenAIEmbedding
    except ImportError:
        return "llama-index-embeddings-openai is not installed"
    if type(model) is not OpenAIEmbedding:
        return f"{type(model).__name__} is not OpenAIEmbedding itself (a subclass may build its own requests)"
    if getattr(model, "_http_client", None) is not None or getattr(model, "_async_http_client", None) is not None:
        return "a custom http_client is set"
    if model.api_version:
        return f"api_version={model.api_version!r} (Azure-style endpoints keep their client)"
    extra = set(model.additional_kwargs) - PAYLOAD_KEYS
    if extra:
        return f"additional_kwargs {sorted(extra)} are passed to the openai client as is"
    if not model.api_base or not model.api_base.startswith(("http://", "https://")):
        return f"api_base={model.api_base!r} is not an http(s) URL"
    return None


def endpoint_of(model: Any, max_in_flight: int | None) -> Endpoint:
    """The endpoint stock's client would talk to, with stock's retry count."""
    limits = Limits(max_in_flight=max_in_flight, initial_in_flight=max_in_flight) if max_in_flight else Limits()
    return Endpoint(model.api_base, model.api_key, tuple(sorted((model.default_headers or {}).items())),
                    timeout_s=model.timeout or 60.0, limits=limits, retries=Retries(attempts=model.max_retries + 1))


def routed(model: BaseEmbedding, max_in_flight: int | None) -> BaseEmbedding | None:
    """A copy of `model` that embeds through the remote client, or None (logged) when it cannot."""
    reason = fallback_reason(model)
    if reason is not None:
        log.debug("aaflow: %s keeps its own client: %s", type(model).__name__, reason)
        return None
    endpoint = endpoint_of(model, max_in_flight)
    engine: str = model._text_engine  # type: ignore[attr-defined]  # what stock's batch call sends as `model`
    extra = dict(model.additional_kwargs)
    client = shared_client()

    async def transport(texts: list[str]) -> list[list[float]]:
        payload = {"model": engine, "input": [t.replace("\n", " ") for t in texts], **extra}
        try:
            return (await client.embed(endpoint, payload)).tolist()
        except RemoteCallError as exc:  # stock's exception type, aaflow's (which names the texts) as its cause
            raise openai_error(exc) from exc

    copy = model.model_copy()
    object.__setattr__(copy, "_aget_text_embeddings", transport)  # the instance's transport only
    return copy


def usage(model: BaseEmbedding) -> dict[str, Any] | None:
    """The shared client's usage for a routed model's endpoint (requests, retries, rejections, tokens)."""
    if fallback_reason(model) is not None:
        return None
    found = shared_client().usage(endpoint_of(model, None))
    return next((u.as_dict() for u in found.values()), None)


def run_endpoints(transforms: Sequence[Any]) -> list[Endpoint]:
    """The endpoints a run's routed models talk to: embedding models and transformations' LLMs."""
    from aaflow_adapters.llamaindex.remote_llm import llm_endpoint

    found: dict[str, Endpoint] = {}
    for t in transforms:
        ep = endpoint_of(t, None) if isinstance(t, BaseEmbedding) and fallback_reason(t) is None else llm_endpoint(t)
        if ep is not None:
            found.setdefault(ep.key, ep)
    return list(found.values())


class UsageMeter:
    """What a run's endpoints were asked and answered during the run, per base URL."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.endpoints = run_endpoints(transforms)
        self.before = {ep.key: self._one(ep) for ep in self.endpoints}

    @staticmethod
    def _one(ep: Endpoint) -> Usage:
        return next(iter(shared_client().usage(ep).values()), Usage(ep.base_url))

    def since(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for ep in self.endpoints:
            delta = self._one(ep).minus(self.before[ep.key]).as_dict()
            if ep.base_url in out:  # the same URL with another key or headers: one figure per URL
                delta = {k: v + out[ep.base_url][k] if isinstance(v, int) else v for k, v in delta.items()}
            out[ep.base_url] = delta
        return out
