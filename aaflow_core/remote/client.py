"""`RemoteClient`: the one place aaflow talks HTTP to model services.

One event loop (a `LoopThread` the client owns, `loop()`) holds one pooled aiohttp session,
one limiter and one usage record per endpoint, and a shared in-flight budget across endpoints.
Coroutines awaited on any other loop are handed to the owner loop and awaited there, so a
LangChain `ainvoke`, a LlamaIndex `arun` and aaflow's own stage threads all share the same
sessions and limits. A request is serialised once (orjson: compact UTF-8, as the openai client
sends it); a retry resends the same bytes, so retries change when an answer arrives, never what
it is or where it goes. Each call's `Endpoint` carries its own limits, timeout and retries: a
later call with other limits for the same endpoint re-configures its limiter (see `_conn`).
The first attempt of a request runs without retry machinery (most never need a second); the
retry loop (`_retry`) starts only after a failure.
"""
from __future__ import annotations

import asyncio
import atexit
import json
import os
import random
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import numpy as np
import orjson

from aaflow_core.concurrency import LoopThread
from aaflow_core.errors import ConfigError, EndpointError, MalformedResponseError, RemoteCallError
from aaflow_core.remote.config import Endpoint, Retries
from aaflow_core.remote.decode import check_chat, decode_embeddings, estimate_tokens
from aaflow_core.remote.limiter import Limiter, retry_after_s
from aaflow_core.remote.usage import Usage

R = TypeVar("R")


@dataclass
class _Conn:
    """What one endpoint key shares: its session, limiter and usage (all used on the owner loop)."""

    endpoint: Endpoint
    session: aiohttp.ClientSession
    limiter: Limiter
    usage: Usage
    timeouts: dict[float, aiohttp.ClientTimeout]

    def timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        """The per-request timeout for a call's `Endpoint.timeout_s` (one object per value)."""
        timeout = self.timeouts.get(seconds)
        if timeout is None:
            timeout = self.timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout


def dumps(payload: dict[str, Any]) -> bytes:
    """The request body as the openai client writes it (compact, UTF-8); json for what orjson refuses
    (integers beyond 64 bits, non-string keys). orjson writes NaN as null where the openai client raises."""
    try:
        return orjson.dumps(payload)
    except TypeError:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def retryable(exc: BaseException) -> bool:
    return isinstance(exc, MalformedResponseError) or (isinstance(exc, EndpointError) and exc.retryable)


def error_of(status: int, raw: bytes, headers: Any, url: str) -> EndpointError:
    """An EndpointError from an error answer: OpenAI-style `error.message` (or the body's start), the body."""
    try:
        body = json.loads(raw)
        message = str(body["error"]["message"] if isinstance(body.get("error"), dict) else body["error"])
    except (ValueError, KeyError, TypeError, AttributeError):
        body, message = None, raw[:200].decode("utf-8", "replace") or "(empty body)"
    if status == 404:
        message += " (check the base URL)"
    return EndpointError(status, message, retryable=status in (408, 409, 429) or status >= 500,
                         retry_after_s=retry_after_s(headers), url=url, body=body)


class RemoteClient:
    """Chat completions and embeddings against OpenAI-compatible endpoints, within their limits."""

    def __init__(self, *, max_in_flight: int = 1024, name: str = "aaflow-remote") -> None:
        if max_in_flight < 1:
            raise ConfigError("max_in_flight", max_in_flight, "must be >= 1")
        self.max_in_flight = max_in_flight
        self._name = name
        self._thread: LoopThread | None = None
        self._lock = threading.Lock()
        self._conns: dict[str, _Conn] = {}
        self._usage: dict[str, tuple[Endpoint, Usage]] = {}  # outlives sessions: read after close()
        self._budget: asyncio.Semaphore | None = None
        self._pid = os.getpid()

    # -- lifecycle ---------------------------------------------------------------------------
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop that owns the sessions (started on first use, again after `close`). Callers
        that run their own coroutines there (an adapter's async steps) skip a thread hop per call."""
        return self._owner()

    def _owner(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid != os.getpid():  # a forked child has none of the parent's threads or sockets
                self._thread, self._conns, self._usage, self._budget, self._pid = None, {}, {}, None, os.getpid()
            if self._thread is None:
                self._thread = LoopThread(self._name).__enter__()
            return self._thread.loop

    def close(self) -> None:
        """Close every session and stop the owner loop (a later call starts a fresh one)."""
        with self._lock:
            thread, self._thread = self._thread, None
            conns, self._conns = list(self._conns.values()), {}
        if thread is None:
            return

        async def close_all() -> None:
            for conn in conns:
                await conn.session.close()

        thread.run(close_all())
        thread.__exit__(None, None, None)
        self._budget = None

    def __enter__(self) -> "RemoteClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public calls ------------------------------------------------------------------------
    def run(self, awaitable: Coroutine[Any, Any, R]) -> R:
        """Run one of this client's coroutines from synchronous code (not from the owner loop)."""
        loop = self._owner()
        if _running_loop() is loop:
            raise RuntimeError("RemoteClient.run called on its own loop; await the coroutine instead")
        return asyncio.run_coroutine_threadsafe(awaitable, loop).result()

    async def chat(self, endpoint: Endpoint, payload: dict[str, Any], *, item: str | None = None) -> dict[str, Any]:
        """POST `payload` to `{base_url}/chat/completions`; the response body as a dict."""
        body = dumps(payload)
        return await self._on_owner(lambda: self._call(endpoint, "/chat/completions", body,
                                                        lambda: item or chat_label(payload),
                                                        estimate_tokens(payload), check_chat))

    async def embed(self, endpoint: Endpoint, payload: dict[str, Any], *, item: str | None = None) -> np.ndarray:
        """POST an embeddings payload (asked as base64 unless it says otherwise); a (n, dim) float32 matrix."""
        payload = {**payload, "encoding_format": payload.get("encoding_format", "base64")}
        inputs = payload.get("input")
        count = 1 if isinstance(inputs, str) else len(inputs or ())
        body = dumps(payload)
        return await self._on_owner(lambda: self._call(endpoint, "/embeddings", body,
                                                        lambda: item or embed_label(inputs),
                                                        estimate_tokens(payload), lambda b: decode_embeddings(b, count)))

    async def embed_texts(self, endpoint: Endpoint, texts: Sequence[str], *, model: str, batch_size: int = 64,
                          extra: dict[str, Any] | None = None, return_exceptions: bool = False,
                          describe: Callable[[int], str] | None = None) -> Any:
        """Embed `texts` in consecutive requests of `batch_size`, all in flight at once (the limiter paces them).

        Returns the (len(texts), dim) matrix in input order; with `return_exceptions`, a list with
        one row or one RemoteCallError (naming its text) per input.
        """
        if batch_size < 1:
            raise ConfigError("batch_size", batch_size, "must be >= 1")
        name = describe or (lambda i: f"text {i} {texts[i][:60]!r}")
        starts = range(0, len(texts), batch_size)
        calls = [self.embed(endpoint, {"model": model, "input": list(texts[s:s + batch_size]), **(extra or {})},
                            item=name(s)) for s in starts]
        results = await asyncio.gather(*calls, return_exceptions=True)
        if return_exceptions:
            out: list[Any] = []
            for s, res in zip(starts, results):
                rows = range(s, min(s + batch_size, len(texts)))
                out.extend(list(res) if isinstance(res, np.ndarray) else
                           [RemoteCallError(name(i), getattr(res, "attempts", 1), res.__cause__ or res)  # type: ignore[arg-type]
                            for i in rows])
            return out
        for res in results:
            if isinstance(res, BaseException):
                raise res
        return np.concatenate(results) if results else np.zeros((0, 0), np.float32)

    def usage(self, endpoint: Endpoint | None = None) -> dict[str, Usage]:
        """Snapshots of the usage records, keyed by base URL (one endpoint's, or all)."""
        records = list(self._usage.items())
        return {ep.base_url: usage.snapshot() for key, (ep, usage) in records if endpoint is None or key == endpoint.key}

    # -- machinery ---------------------------------------------------------------------------
    async def _on_owner(self, make: Callable[[], Awaitable[R]]) -> R:
        thread = self._thread  # already on the owner loop (the adapters' usual case): no lock, no pid check
        if thread is not None and asyncio.get_running_loop() is thread.loop:
            return await make()
        loop = self._owner()
        if _running_loop() is loop:
            return await make()

        async def there() -> R:
            return await make()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(there(), loop))

    def _conn(self, endpoint: Endpoint) -> _Conn:
        conn = self._conns.get(endpoint.key)
        if conn is None:  # on the owner loop: the session binds to it. The limiter caps requests in
            # flight, so the pool does not (limit=0); the timeout goes with each request
            session = aiohttp.ClientSession(headers=endpoint.request_headers(),
                                            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300))
            _, usage = self._usage.setdefault(endpoint.key, (endpoint, Usage(endpoint.base_url)))
            conn = _Conn(endpoint, session, Limiter(endpoint.limits), usage, {})
            self._conns[endpoint.key] = conn
        elif endpoint.limits is not conn.limiter.limits and endpoint.limits != conn.limiter.limits:
            conn.limiter.reconfigure(endpoint.limits)  # the latest call's limits apply from now on
        if self._budget is None:
            self._budget = asyncio.Semaphore(self.max_in_flight)
        return conn

    async def _call(self, endpoint: Endpoint, path: str, body: bytes, label: Callable[[], str], tokens: float,
                    parse: Callable[[bytes], Any]) -> Any:
        conn = self._conn(endpoint)
        try:
            return await self._attempt(conn, endpoint, path, body, tokens, parse)
        except (EndpointError, MalformedResponseError) as exc:
            return await self._retry(conn, endpoint, path, body, label, tokens, parse, exc)

    async def _retry(self, conn: _Conn, endpoint: Endpoint, path: str, body: bytes, label: Callable[[], str],
                     tokens: float, parse: Callable[[bytes], Any], exc: EndpointError | MalformedResponseError) -> Any:
        """After a failed first attempt: retry within `endpoint.retries` (see `backoff_s`), or give up
        with a RemoteCallError naming the item."""
        policy, attempts, limited = endpoint.retries, 1, 0
        while True:
            limited += isinstance(exc, EndpointError) and exc.status == 429
            failed = attempts - limited
            if not retryable(exc) or failed >= policy.attempts or limited > policy.rate_limited:
                conn.usage.failed += 1
                raise RemoteCallError(f"{label()} ({endpoint.base_url}{path})", attempts, exc) from exc
            await asyncio.sleep(backoff_s(policy, exc, attempts))
            attempts += 1
            conn.usage.retries += 1
            try:
                return await self._attempt(conn, endpoint, path, body, tokens, parse)
            except (EndpointError, MalformedResponseError) as again:
                exc = again

    async def _attempt(self, conn: _Conn, endpoint: Endpoint, path: str, body: bytes, tokens: float,
                       parse: Callable[[bytes], Any]) -> Any:
        ticket = await conn.limiter.acquire(tokens)
        status: int | None = None
        headers: Any = None
        used: int | None = None
        assert self._budget is not None
        url = conn.endpoint.base_url + path
        try:
            async with self._budget:
                conn.usage.requests += 1
                try:
                    async with conn.session.post(url, data=body, timeout=conn.timeout(endpoint.timeout_s)) as resp:
                        status, headers = resp.status, resp.headers
                        raw = await resp.read()
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    conn.usage.errors += 1
                    raise EndpointError(None, f"{type(exc).__name__}: {exc or 'timed out'}", retryable=True, url=url,
                                        timed_out=isinstance(exc, asyncio.TimeoutError)) from None
            if status >= 400:
                if status == 429:
                    conn.usage.rejections += 1
                else:
                    conn.usage.errors += 1
                raise error_of(status, raw, headers, url)
            try:
                data = orjson.loads(raw)
                result = parse(data)
            except (ValueError, MalformedResponseError) as exc:  # orjson.JSONDecodeError is a ValueError
                conn.usage.errors += 1
                status = None  # not a success for the window
                raise MalformedResponseError(f"malformed response body: {exc}") from None
            used = conn.usage.add_tokens(data.get("usage"))
            return result
        finally:
            conn.limiter.release(ticket, headers=headers, status=status, used_tokens=used)


def backoff_s(policy: Retries, exc: BaseException, attempts: int) -> float:
    """Seconds before the next attempt. A 429 with Retry-After has paused the endpoint already (the
    limiter waits); another answer's Retry-After is obeyed up to `max_s`; the rest back off
    exponentially (`initial_s * 2**(attempts-1)` plus up to `jitter_s`, at most `max_s`)."""
    if isinstance(exc, EndpointError) and exc.retry_after is not None:
        return 0.0 if exc.status == 429 else min(policy.max_s, exc.retry_after)
    return max(0.0, min(policy.max_s, policy.initial_s * 2.0 ** (attempts - 1) + random.uniform(0, policy.jitter_s)))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def chat_label(payload: dict[str, Any]) -> str:
    messages = payload.get("messages") or [{}]
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    content = last.get("content")
    return f"chat request {content[:60]!r}" if isinstance(content, str) else "chat request"


def embed_label(inputs: Any) -> str:
    first = inputs if isinstance(inputs, str) else (inputs[0] if inputs else "")
    count = 1 if isinstance(inputs, str) else len(inputs or ())
    return f"embeddings of {count} text(s) from {str(first)[:60]!r}"


_SHARED: RemoteClient | None = None
_SHARED_LOCK = threading.Lock()


def shared_client() -> RemoteClient:
    """The process-wide client: one session and limiter per endpoint for every caller; closed at exit."""
    global _SHARED
    if _SHARED is not None:  # asked for on every request: no lock once it exists
        return _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = RemoteClient()
            atexit.register(_SHARED.close)
        return _SHARED
