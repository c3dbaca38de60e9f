"""The aiohttp application: request validation, OpenAI-style errors, server-side batching.

Concurrent requests are gathered by an AsyncBatcher with a short deadline into one backend
call, as an inference server does; `latency_s` adds a fixed per-request service time so
benchmarks can model a hosted endpoint, and `max_concurrency` caps requests served at once.
"""
from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import web

from aaflow_core.concurrency import AsyncBatcher, BatchPolicy, RetryPolicy
from aaflow_core.serve.backends import ChatBackend, ChatRequest, EmbeddingsBackend

ROLES = ("system", "user", "assistant", "tool", "developer")


@dataclass
class ServerStats:
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    embedded_inputs: int = 0


STATS = web.AppKey("stats", ServerStats)


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def error_response(status: int, message: str, *, kind: str = "invalid_request_error", param: str | None = None,
                   code: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string", "model")
    return body


def parse_chat(body: dict[str, Any]) -> ChatRequest:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array", "messages")
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
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise BadRequest("'max_tokens' must be a positive integer", "max_tokens")
    if body.get("stream"):
        raise BadRequest("streaming responses are not supported by this server", "stream")
    if body.get("n", 1) != 1:
        raise BadRequest("only n=1 is supported", "n")
    temperature = body.get("temperature")
    if temperature is not None and not isinstance(temperature, (int, float)):
        raise BadRequest("'temperature' must be a number", "temperature")
    return ChatRequest(body["model"], tuple(parsed), max_tokens, temperature)


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


def create_app(*, chat: ChatBackend | None = None, embeddings: EmbeddingsBackend | None = None,
               latency_s: float = 0.0, max_concurrency: int | None = None, max_inputs: int = 2048,
               max_batch: int = 64, max_wait_ms: float = 2.0) -> web.Application:
    """An OpenAI-compatible app; routes exist only for the backends given."""
    app = web.Application(client_max_size=64 * 2**20)
    app[STATS] = ServerStats()
    gate = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    once = RetryPolicy(attempts=1)
    chat_batcher = AsyncBatcher(chat.complete, BatchPolicy(max_batch, max_wait_ms, max_in_flight=4), once) if chat else None

    async def served(request: web.Request, work: Any) -> web.StreamResponse:
        stats = app[STATS]
        stats.requests += 1
        try:
            body = await read_json(request)
            if gate is not None:
                await gate.acquire()
            stats.in_flight += 1
            stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
            try:
                if latency_s:
                    await asyncio.sleep(latency_s)
                return await work(body)
            finally:
                stats.in_flight -= 1
                if gate is not None:
                    gate.release()
        except BadRequest as exc:
            return error_response(400, str(exc), param=exc.param)

    async def chat_completions(request: web.Request) -> web.StreamResponse:
        async def work(body: dict[str, Any]) -> web.Response:
            req = parse_chat(body)
            assert chat_batcher is not None
            res = await chat_batcher.submit(req)
            return web.json_response({
                "id": f"chatcmpl-{app[STATS].requests}", "object": "chat.completion", "created": int(time.time()),
                "model": req.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": res.content},
                             "finish_reason": res.finish_reason, "logprobs": None}],
                "usage": {"prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens,
                          "total_tokens": res.prompt_tokens + res.completion_tokens},
            })

        return await served(request, work)

    async def embeddings_route(request: web.Request) -> web.StreamResponse:
        async def work(body: dict[str, Any]) -> web.Response:
            texts = parse_inputs(body, max_inputs)
            assert embeddings is not None
            matrix = await embeddings.embed(texts)
            app[STATS].embedded_inputs += len(texts)
            return web.json_response({
                "object": "list", "model": body["model"],
                "data": embedding_items(matrix, body.get("encoding_format", "float")),
                "usage": {"prompt_tokens": sum(len(t.split()) for t in texts), "total_tokens": sum(len(t.split()) for t in texts)},
            })

        return await served(request, work)

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "aaflow", "object": "model", "owned_by": "aaflow"}]})

    app.router.add_get("/v1/models", models)
    if chat is not None:
        app.router.add_post("/v1/chat/completions", chat_completions)
    if embeddings is not None:
        app.router.add_post("/v1/embeddings", embeddings_route)
    return app
