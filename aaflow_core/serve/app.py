"""The aiohttp application: request validation, OpenAI-style errors, server-side batching.

Concurrent requests are gathered by an AsyncBatcher with a short deadline into one backend
call, as an inference server does; `latency_s` adds a fixed per-request service time so
benchmarks can model a hosted endpoint, and `max_concurrency` caps requests served at once.
Requests are checked (body size, messages, prompt and answer length against the model's
context) before they queue; keys, limits and the wait queue are in auth.py and limits.py.
"""
from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np
from aiohttp import web
from aiohttp.typedefs import Handler

from aaflow_core.concurrency import AsyncBatcher, BatchPolicy, RetryPolicy
from aaflow_core.serve.auth import ApiKeys
from aaflow_core.serve.backends import ChatBackend, ChatRequest, ChatResult, EmbeddingsBackend
from aaflow_core.serve.limits import (
    Admission, ApiError, BadRequest, BodyTooLarge, ContextWindow, ServeLimits, ServerStats, answer_tokens,
)

T = TypeVar("T")

ROLES = ("system", "user", "assistant", "tool", "developer")
STATS = web.AppKey("stats", ServerStats)
ADMISSION = web.AppKey("admission", Admission)
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tf'  # who, route, status, size, seconds: never bodies or headers


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal raised as an ApiError becomes its OpenAI-style error response."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()


async def read_json(request: web.Request, max_body_bytes: int) -> dict[str, Any]:
    try:
        body = await request.json(loads=json.loads)
    except web.HTTPRequestEntityTooLarge:  # aiohttp stops reading at the app's client_max_size
        raise BodyTooLarge(f"request body is larger than the server's limit of {max_body_bytes} bytes") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string", "model")
    return body


def max_tokens_field(body: dict[str, Any]) -> str:
    """The name the client used for the answer length (newer clients send max_completion_tokens)."""
    return "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"


def parse_chat(body: dict[str, Any], max_messages: int) -> ChatRequest:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array", "messages")
    if len(messages) > max_messages:
        raise BadRequest(f"'messages' has {len(messages)} items; at most {max_messages} per request", "messages")
    parsed = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise BadRequest(f"messages[{i}].role must be one of {', '.join(ROLES)}", f"messages[{i}].role")
        content = m.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise BadRequest(f"messages[{i}].content must be a string", f"messages[{i}].content")
        parsed.append((m["role"], content))
    field = max_tokens_field(body)
    max_tokens = body.get(field)
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise BadRequest(f"'{field}' must be a positive integer", field)
    if body.get("stream"):
        raise BadRequest("streaming responses are not supported by this server", "stream")
    if body.get("n", 1) != 1:
        raise BadRequest("only n=1 is supported", "n")
    temperature = body.get("temperature")
    if temperature is not None and not isinstance(temperature, (int, float)):
        raise BadRequest("'temperature' must be a number", "temperature")
    return ChatRequest(body["model"], tuple(parsed), max_tokens, temperature)


async def fit_context(req: ChatRequest, backend: ChatBackend, field: str, limit: int | None) -> ChatRequest:
    """Check the prompt and the answer length against the model's context (backends that know it)."""
    if not isinstance(backend, ContextWindow):
        return req
    prompt = await backend.count_prompt_tokens(req.messages)
    tokens = answer_tokens(req.max_tokens, field, default=backend.default_max_tokens, prompt=prompt,
                           context=backend.context_tokens, limit=limit)
    return replace(req, max_tokens=tokens)


def parse_inputs(body: dict[str, Any], max_inputs: int) -> list[str]:
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadRequest("'input' must be a non-empty string or array of strings", "input")
    if len(texts) > max_inputs:
        raise BadRequest(f"'input' has {len(texts)} items; at most {max_inputs} per request", "input")
    if any(not t for t in texts):
        raise BadRequest("'input' items must be non-empty strings", "input")
    if body.get("encoding_format", "float") not in ("float", "base64"):
        raise BadRequest("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    return texts


def embedding_items(matrix: np.ndarray, encoding: str) -> list[dict[str, Any]]:
    if encoding == "base64":
        rows = [base64.b64encode(row.astype("<f4").tobytes()).decode() for row in matrix]
    else:
        rows = matrix.tolist()  # JSON needs numbers; the base64 path avoids this
    return [{"object": "embedding", "index": i, "embedding": r} for i, r in enumerate(rows)]


def completion_body(completion_id: str, req: ChatRequest, res: ChatResult) -> dict[str, Any]:
    """A chat.completion object, as the synchronous route and the Batch API's output lines carry it."""
    return {
        "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": req.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": res.content},
                     "finish_reason": res.finish_reason, "logprobs": None}],
        "usage": {"prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens,
                  "total_tokens": res.prompt_tokens + res.completion_tokens},
    }


def create_app(*, chat: ChatBackend | None = None, embeddings: EmbeddingsBackend | None = None,
               latency_s: float = 0.0, max_concurrency: int | None = None, max_inputs: int = 2048,
               max_batch: int = 64, max_wait_ms: float = 2.0, keys: ApiKeys | None = None,
               limits: ServeLimits = ServeLimits()) -> web.Application:
    """An OpenAI-compatible app; routes exist only for the backends given.

    `max_concurrency` requests are served at once and up to `limits.max_queue` more wait (None:
    all are served at once); with `keys`, every route but /health needs one of them.
    """
    app = web.Application(client_max_size=limits.max_body_bytes,
                          middlewares=([keys.middleware] if keys is not None else []) + [api_errors])
    stats = app[STATS] = ServerStats()
    admission = app[ADMISSION] = Admission(max_concurrency, limits, stats)
    once = RetryPolicy(attempts=1)
    chat_batcher = AsyncBatcher(chat.complete, BatchPolicy(max_batch, max_wait_ms, max_in_flight=4), once) if chat else None

    async def serve(work: Callable[[], Awaitable[T]]) -> T:
        async def timed() -> T:
            if latency_s:
                await asyncio.sleep(latency_s)
            return await work()

        return await admission.run(timed)

    async def chat_completions(request: web.Request) -> web.StreamResponse:
        stats.requests += 1
        body = await read_json(request, limits.max_body_bytes)
        assert chat is not None and chat_batcher is not None
        req = await fit_context(parse_chat(body, limits.max_messages), chat, max_tokens_field(body),
                                limits.max_tokens_limit)
        res = await serve(lambda: chat_batcher.submit(req))
        return web.json_response(completion_body(f"chatcmpl-{stats.requests}", req, res))

    async def embeddings_route(request: web.Request) -> web.StreamResponse:
        stats.requests += 1
        body = await read_json(request, limits.max_body_bytes)
        texts = parse_inputs(body, max_inputs)
        assert embeddings is not None
        matrix = await serve(lambda: embeddings.embed(texts))
        stats.embedded_inputs += len(texts)
        words = sum(len(t.split()) for t in texts)
        return web.json_response({
            "object": "list", "model": body["model"],
            "data": embedding_items(matrix, body.get("encoding_format", "float")),
            "usage": {"prompt_tokens": words, "total_tokens": words},
        })

    async def models(request: web.Request) -> web.Response:
        entry: dict[str, Any] = {"id": "aaflow", "object": "model", "owned_by": "aaflow"}
        if isinstance(chat, ContextWindow):
            entry["context_length"] = chat.context_tokens
        return web.json_response({"object": "list", "data": [entry], **admission.report()})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **admission.report()})

    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    if chat is not None:
        app.router.add_post("/v1/chat/completions", chat_completions)
    if embeddings is not None:
        app.router.add_post("/v1/embeddings", embeddings_route)
    return app
