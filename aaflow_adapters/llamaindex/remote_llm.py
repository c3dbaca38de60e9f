"""Route LlamaIndex's `OpenAI`/`OpenAILike` LLMs (extractors' `llm`) through aaflow's remote client.

Transformations that call an LLM (`TitleExtractor`, `SummaryExtractor`,
`QuestionsAnsweredExtractor`, `KeywordExtractor`, user components with an `llm` field) run with
a private copy of the transformation whose LLM is a private copy of the user's. Only that copy's
openai client is replaced: the integration itself still builds every request (`_achat`,
`_get_model_kwargs`, `to_openai_message_dicts`) and reads every answer (`from_openai_message`,
logprobs, token counts) with its own code, and LlamaIndex's callbacks, instrumentation and
retry decorator run as stock. The replaced client turns the `chat.completions.create` keyword
arguments into the body the openai client would send (openai's own `maybe_transform`), posts it
through `aaflow_core.remote` (one pooled session, the endpoint's limiter, the shared in-flight
budget, usage per endpoint) and returns openai's own `ChatCompletion` built from the answer.
What it does not cover (streaming, legacy `/completions`, request options such as
`extra_headers`, unknown arguments, values that are not JSON) goes to the integration's own
openai client for that call; models it cannot route at all (a subclass, a custom
`http_client` or openai client, a non-http `api_base`) keep their own client. A debug log on
`aaflow_adapters.llamaindex.remote_llm` says why, each time.
"""
from __future__ import annotations

import inspect
import json
import logging
from functools import lru_cache
from typing import Any

from llama_index.core.async_utils import DEFAULT_NUM_WORKERS

from aaflow_core.remote import Endpoint, RemoteCallError, Retries, openai_error, shared_client

log = logging.getLogger(__name__)
REQUEST_OPTIONS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})


def _classes() -> tuple[type, ...]:
    found: list[type] = []
    try:
        from llama_index.llms.openai import OpenAI

        found.append(OpenAI)
    except ImportError:
        pass
    try:
        from llama_index.llms.openai_like import OpenAILike

        found.append(OpenAILike)
    except ImportError:
        pass
    return tuple(found)


def fallback_reason(llm: Any) -> str | None:
    """Why `llm` keeps its own client (None: it can be routed)."""
    classes = _classes()
    if type(llm) not in classes:
        return f"{type(llm).__name__} is not OpenAI or OpenAILike itself (a subclass may build its own requests)"
    if llm._http_client is not None or llm._async_http_client is not None:
        return "a custom http_client is set"
    if llm._client is not None or llm._aclient is not None:
        return "an openai client of its own is set"
    if not llm.api_base or not str(llm.api_base).startswith(("http://", "https://")):
        return f"api_base={llm.api_base!r} is not an http(s) URL"
    return None


def endpoint_of(llm: Any) -> Endpoint:
    """The endpoint the integration's client would talk to, with its retry count."""
    return Endpoint(str(llm.api_base), llm.api_key, tuple(sorted((llm.default_headers or {}).items())),
                    timeout_s=llm.timeout or 60.0, retries=Retries(attempts=llm.max_retries + 1))


@lru_cache(maxsize=1)
def _create_parameters() -> frozenset[str]:
    from openai.resources.chat.completions import AsyncCompletions

    return frozenset(inspect.signature(AsyncCompletions.create).parameters) - {"self"}


def chat_body(kwargs: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON body openai's `chat.completions.create(**kwargs)` sends, or (None, why not)."""
    from openai import NotGiven, Omit
    from openai._utils import maybe_transform
    from openai.types.chat import completion_create_params

    if kwargs.get("stream"):
        return None, "streaming"
    unknown = set(kwargs) - _create_parameters()
    if unknown:
        return None, f"arguments the openai client does not take: {sorted(unknown)}"
    options = {k for k in REQUEST_OPTIONS if kwargs.get(k) is not None} - {"extra_body"}
    if options:
        return None, f"request options {sorted(options)}"
    if isinstance(kwargs.get("response_format"), type):
        return None, "a response_format class (the openai client refuses it)"
    params = {k: v for k, v in kwargs.items() if k not in REQUEST_OPTIONS and not isinstance(v, (NotGiven, Omit))}
    body = maybe_transform(params, completion_create_params.CompletionCreateParamsNonStreaming)
    body.update(kwargs.get("extra_body") or {})
    try:
        json.dumps(body)
    except (TypeError, ValueError) as exc:
        return None, f"a value that is not JSON ({exc})"
    return body, None


class _Own:
    """The integration's own openai clients, made the first time a call needs them."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.sync: Any = None
        self.aio: Any = None

    def client(self, is_async: bool) -> Any:
        from openai import AsyncOpenAI, OpenAI

        if is_async:
            self.aio = self.aio or AsyncOpenAI(**self.llm._get_credential_kwargs(is_async=True))
            return self.aio
        self.sync = self.sync or OpenAI(**self.llm._get_credential_kwargs())
        return self.sync


class _ChatCompletions:
    def __init__(self, endpoint: Endpoint, own: _Own, is_async: bool) -> None:
        self.endpoint, self.own, self.is_async = endpoint, own, is_async

    async def _lean(self, body: dict[str, Any]) -> Any:
        from openai._models import construct_type
        from openai.types.chat import ChatCompletion

        try:
            answer = await shared_client().chat(self.endpoint, body)
        except RemoteCallError as exc:  # stock's exception type, aaflow's (which names the item) as its cause
            raise openai_error(exc) from exc
        return construct_type(type_=ChatCompletion, value=answer)

    def create(self, **kwargs: Any) -> Any:
        body, why = chat_body(kwargs)
        if body is None:
            log.debug("aaflow: this chat call goes through the integration's own openai client: %s", why)
            own = self.own.client(self.is_async).chat.completions
            return own.create(**kwargs)
        if self.is_async:
            return self._lean(body)
        return shared_client().run(self._lean(body))


class _Completions:
    """Legacy `/completions`: always the integration's own client."""

    def __init__(self, own: _Own, is_async: bool) -> None:
        self.own, self.is_async = own, is_async

    def create(self, **kwargs: Any) -> Any:
        log.debug("aaflow: a legacy /completions call goes through the integration's own openai client")
        return self.own.client(self.is_async).completions.create(**kwargs)


class LeanOpenAIClient:
    """What the integration's `_get_client()`/`_get_aclient()` returns on the routed copy."""

    def __init__(self, endpoint: Endpoint, own: _Own, is_async: bool) -> None:
        self.chat = type("Chat", (), {})()
        self.chat.completions = _ChatCompletions(endpoint, own, is_async)
        self.completions = _Completions(own, is_async)

    async def __aenter__(self) -> "LeanOpenAIClient":  # `reuse_client=False`: `async with aclient:`
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __enter__(self) -> "LeanOpenAIClient":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def routed_llm(llm: Any) -> Any | None:
    """A copy of `llm` whose chat calls go through the remote client, or None (logged) when it cannot."""
    reason = fallback_reason(llm)
    if reason is not None:
        log.debug("aaflow: %s keeps its own client: %s", type(llm).__name__, reason)
        return None
    endpoint, copy = endpoint_of(llm), llm.model_copy()
    own = _Own(copy)
    copy._client, copy._aclient = LeanOpenAIClient(endpoint, own, False), LeanOpenAIClient(endpoint, own, True)
    copy.reuse_client = True  # the lean client is the one to reuse; stock's is made only for what it covers
    return copy


def with_routed_llm(transform: Any) -> Any:
    """`transform`, or a private copy of it whose `llm` goes through the remote client."""
    llm = getattr(transform, "llm", None)
    if llm is None or not _classes() or not hasattr(type(transform), "model_fields") or \
            "llm" not in type(transform).model_fields:
        return transform
    lean = routed_llm(llm)
    if lean is None:
        return transform
    update: dict[str, Any] = {"llm": lean}
    if getattr(transform, "num_workers", None) == DEFAULT_NUM_WORKERS:  # stock's default, not the user's choice:
        update["num_workers"] = endpoint_of(llm).limits.max_in_flight  # the endpoint's limiter decides
    return transform.model_copy(update=update)


def llm_endpoint(transform: Any) -> Endpoint | None:
    """The endpoint a transformation's routed LLM uses (None: no routed LLM)."""
    llm = getattr(transform, "llm", None)
    return None if llm is None or fallback_reason(llm) is not None else endpoint_of(llm)
