"""`ChatOpenAI` calls made inside an aaflow run go through `aaflow_core.remote`, with stock's outputs.

The request is built by the model's own `_get_request_payload` and the answer parsed by its own
`_create_chat_result`, so tools, `n`, stop, logprobs and usage behave as stock; everything around
the transport (callbacks, run tree, caching, rate limiters, retries of wrappers) is LangChain's own
code, untouched. Only the transport changes: one pooled aiohttp session and one limiter per
endpoint (`aaflow_core.remote`) instead of the openai client and its httpx pool (~4.5 ms of CPU per
request, quadratic in requests in flight).

How: `install()` wraps `BaseChatOpenAI._agenerate`/`_generate` once per process. The wrappers act
only while an aaflow run is active in the calling context (`remote.active_gate()`), for a plain
`ChatOpenAI` with a default client; any other call (outside aaflow, a subclass, streaming,
`response_format`, the Responses API, a custom `http_client` or `async_client`, a callable API key,
a proxy, `default_query`, `include_response_headers`, `extra_headers`/`extra_query`) runs stock's
own code, and inside a run a debug log says why. So models inside graphs, agents and wrappers
take the lean path too, with no change to the user's objects.

A failed request raises what stock raises (the openai client's exception for that answer, through
langchain-openai's own error handlers), with aaflow's `RemoteCallError`, which names the item, as
its cause. What differs: 429s are retried within the endpoint's limits (stock: `max_retries`, then
the item is lost).
"""
from __future__ import annotations

import functools
import inspect
import logging
import sys
from typing import Any, NoReturn

from pydantic import SecretStr, ValidationError

from aaflow_core.remote import Endpoint, Limits, RemoteCallError, Retries, openai_error, shared_client
from aaflow_adapters.langchain.remote import active_gate

log = logging.getLogger(__name__)
_OPENAI_TIMEOUT_S = 600.0  # the openai client's default
_NOT_BODY = ("extra_headers", "extra_query", "timeout", "stream_options")
_installed = False


def fallback_reason(model: Any) -> str | None:
    """Why this model's calls keep the integration's own client (None: they can go lean)."""
    from langchain_openai import ChatOpenAI

    if type(model) is not ChatOpenAI:
        return f"{type(model).__name__} is not ChatOpenAI itself (a subclass may build its own requests)"
    if model.root_async_client is None or model.http_async_client is not None or model.http_client is not None:
        return "a custom client or http_client is set"
    if not (model.openai_api_key is None or isinstance(model.openai_api_key, SecretStr)):
        return "the API key is a callable (token provider)"
    if model.openai_proxy or model.default_query or model.include_response_headers:
        return "openai_proxy, default_query or include_response_headers is set"
    if model.streaming:
        return "streaming=True"
    return None


def payload_reason(model: Any, payload: dict[str, Any]) -> str | None:
    if "response_format" in payload:
        return "response_format (parsed by the openai client)"
    if model._use_responses_api(payload):
        return "the Responses API"
    if payload.get("stream"):
        return "a streaming request"
    if any(key in payload for key in _NOT_BODY):
        return f"request options {[k for k in _NOT_BODY if k in payload]}"
    return None


@functools.lru_cache(maxsize=64)
def _endpoint(base_url: str, api_key: str | None, headers: tuple[tuple[str, str], ...], timeout_s: float,
              attempts: int, in_flight: int) -> Endpoint:
    return Endpoint(base_url, api_key, headers, timeout_s=timeout_s,
                    limits=Limits(max_in_flight=in_flight, initial_in_flight=in_flight),
                    retries=Retries(attempts=attempts))


def endpoint_of(model: Any, in_flight: int) -> Endpoint:
    """Where stock's client sends requests, with its key, headers, timeout and retry count."""
    client = model.root_async_client
    headers = dict(model.default_headers or {})
    if model.openai_organization:
        headers["OpenAI-Organization"] = model.openai_organization
    timeout = model.request_timeout
    timeout_s = float(timeout) if isinstance(timeout, (int, float)) else _OPENAI_TIMEOUT_S
    retries = 2 if model.max_retries is None else model.max_retries
    return _endpoint(str(client.base_url).rstrip("/"), client.api_key or None, tuple(sorted(headers.items())),
                     timeout_s, retries + 1, max(256, in_flight))


def _body(payload: dict[str, Any]) -> dict[str, Any]:
    """The JSON the openai client would send: `extra_body` merged in, None-valued `stream` kept as stock."""
    extra = payload.pop("extra_body", None) or {}
    return {**payload, **extra}


def _route(model: Any, messages: Any, stop: Any, kwargs: dict[str, Any]) -> tuple[Endpoint, dict[str, Any]] | None:
    gate = active_gate()
    if gate is None:
        return None
    reason = fallback_reason(model)
    payload = None
    if reason is None:
        payload = model._get_request_payload(messages, stop=stop, **kwargs)
        reason = payload_reason(model, payload)
    if reason is not None or payload is None:
        log.debug("aaflow: %s keeps its own client: %s", type(model).__name__, reason)
        return None
    return endpoint_of(model, gate.in_flight), _body(payload)


def _completion(body: dict[str, Any]) -> Any:
    """The openai client's own response object for the body, so `_create_chat_result` sees stock's
    defaults (`refusal`, `system_fingerprint`, ...). The client builds it with `model_construct`
    (~140 us, Python); strict validation (~8 us, Rust) accepts only bodies whose every value already
    has its field's type, for which both build the same object; anything else is constructed as stock."""
    from openai.types.chat import ChatCompletion

    try:
        return ChatCompletion.model_validate(body, strict=True)
    except ValidationError:
        return ChatCompletion.model_construct(**body)


def _raise_as_stock(module: Any, exc: RemoteCallError) -> NoReturn:
    """Raise what `ChatOpenAI` raises for the same answer: the openai client's exception, passed
    through langchain-openai's own handlers (context overflow, auth, ...); aaflow's error, which
    names the item, is its cause and a note."""
    import openai

    err = openai_error(exc)
    err.__cause__ = exc
    try:
        if isinstance(err, openai.BadRequestError):
            module._handle_openai_bad_request(err)
        elif isinstance(err, openai.APIError):
            module._handle_openai_api_error(err)
    except Exception as converted:  # langchain-openai's own class for this error
        err = converted
    err.add_note(f"aaflow: {exc}")
    raise err


def install() -> None:
    """Wrap `BaseChatOpenAI`'s generate methods once (only when langchain-openai is already imported)."""
    global _installed
    module = sys.modules.get("langchain_openai.chat_models.base")
    if _installed or module is None:
        return
    cls = module.BaseChatOpenAI
    stock_agenerate, stock_generate = cls._agenerate, cls._generate

    async def _agenerate(self: Any, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
        routed = _route(self, messages, stop, kwargs)
        if routed is None:
            return await stock_agenerate(self, messages, stop=stop, run_manager=run_manager, **kwargs)
        endpoint, body = routed
        try:
            answer = await active_gate().send_chat(endpoint, body)  # type: ignore[union-attr]
        except RemoteCallError as exc:
            _raise_as_stock(module, exc)
        return self._create_chat_result(_completion(answer), {})

    def _generate(self: Any, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
        routed = _route(self, messages, stop, kwargs)
        if routed is None:
            return stock_generate(self, messages, stop=stop, run_manager=run_manager, **kwargs)
        endpoint, body = routed
        client = shared_client()
        try:
            answer = client.run(client.chat(endpoint, body))
        except RemoteCallError as exc:
            _raise_as_stock(module, exc)
        return self._create_chat_result(_completion(answer), {})

    for wrapper, stock in ((_agenerate, stock_agenerate), (_generate, stock_generate)):
        functools.update_wrapper(wrapper, stock)
        # langchain-core inspects `_agenerate`'s signature on every call (does it take run_manager?):
        # a stored one spares unwrapping and reading the function each time
        wrapper.__signature__ = inspect.signature(stock)  # type: ignore[attr-defined]
    cls._agenerate, cls._generate = _agenerate, _generate
    _installed = True


def embeddings_reason(model: Any) -> str | None:
    """Why `OpenAIEmbeddings` keeps its own client (None: its requests can go through the remote layer)."""
    module = sys.modules.get("langchain_openai.embeddings.base")
    if module is None or type(model) is not module.OpenAIEmbeddings:
        return f"{type(model).__name__} is not OpenAIEmbeddings itself"
    if model.check_embedding_ctx_length:
        return "check_embedding_ctx_length=True (requests carry tiktoken token ids)"
    if model.http_client is not None or model.http_async_client is not None or model.openai_proxy:
        return "a custom http_client or a proxy is set"
    if model.default_query or getattr(model.client, "_client", None) is None:
        return "default_query is set, or the client is not openai's own"
    if not (model.openai_api_key is None or isinstance(model.openai_api_key, SecretStr)):
        return "the API key is a callable (token provider)"
    return None


def embed_lean(model: Any, texts: list[str], describe: Any = None) -> Any:
    """`model.embed_documents(texts)` as one float32 matrix, its requests (`chunk_size` texts each, as
    stock cuts them) all in flight through the remote layer; None (logged) when not covered."""
    reason = embeddings_reason(model)
    if reason is not None:
        log.debug("aaflow: %s keeps its own client: %s", type(model).__name__, reason)
        return None
    client = model.client._client  # the openai client stock would send with: its URL and key
    timeout = model.request_timeout
    endpoint = _endpoint(str(client.base_url).rstrip("/"), client.api_key or None,
                         tuple(sorted((model.default_headers or {}).items())),
                         float(timeout) if isinstance(timeout, (int, float)) else _OPENAI_TIMEOUT_S,
                         model.max_retries + 1, 256)
    params = dict(model._invocation_params)
    name = params.pop("model")
    remote = shared_client()
    try:
        return remote.run(remote.embed_texts(endpoint, texts, model=name, batch_size=model.chunk_size, extra=params,
                                             describe=describe))
    except RemoteCallError as exc:  # stock's exception type; aaflow's error (naming the texts) as its cause
        err = openai_error(exc)
        err.add_note(f"aaflow: {exc}")
        raise err from exc
