"""What keeps a served model safe to expose: request limits, a bounded wait queue, a per-request timeout.

Every refusal is an `ApiError` that renders as an OpenAI-style error body, so OpenAI clients (and
aaflow's own remote layer) see a 400 naming the field, or a 429 with `Retry-After` and back off.
"""
from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from aiohttp import web

from aaflow_core.errors import ConfigError

T = TypeVar("T")


@dataclass
class ServerStats:
    """Counted, not timed: what /health reports and tests assert with."""

    requests: int = 0
    in_flight: int = 0  # requests being served (holding a slot)
    max_in_flight: int = 0
    queue_depth: int = 0  # requests waiting for a slot
    rejected: int = 0  # answered 429: the queue was full
    timed_out: int = 0
    embedded_inputs: int = 0


class ApiError(Exception):
    """A request the server refuses; carries the HTTP status and the OpenAI error fields."""

    status = 400
    kind = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.headers = headers

    def response(self) -> web.Response:
        return error_response(self.status, str(self), kind=self.kind, param=self.param, code=self.code,
                              headers=self.headers)


class BadRequest(ApiError):
    pass


class BodyTooLarge(ApiError):
    status, code = 413, "request_too_large"


class Overloaded(ApiError):
    status, kind, code = 429, "rate_limit_exceeded", "rate_limit_exceeded"


class RequestTimedOut(ApiError):
    status, kind, code = 504, "server_error", "timeout"


def error_response(status: int, message: str, *, kind: str = "invalid_request_error", param: str | None = None,
                   code: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


@dataclass(frozen=True)
class ServeLimits:
    """Server-side limits, validated once. `max_queue` bounds requests waiting for one of the
    `max_concurrency` service slots (no slots: every request is served at once and none wait);
    `max_tokens_limit` caps answers below the model's context when set."""

    max_body_bytes: int = 2 * 2**20
    max_messages: int = 256
    max_queue: int = 256
    request_timeout_s: float = 300.0
    max_tokens_limit: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_messages"):
            if getattr(self, name) < 1:
                raise ConfigError(name, getattr(self, name), "must be >= 1")
        if self.max_queue < 0:
            raise ConfigError("max_queue", self.max_queue, "must be >= 0")
        if not self.request_timeout_s > 0:
            raise ConfigError("request_timeout_s", self.request_timeout_s, "must be > 0")
        if self.max_tokens_limit is not None and self.max_tokens_limit < 1:
            raise ConfigError("max_tokens_limit", self.max_tokens_limit, "must be >= 1")


@runtime_checkable
class ContextWindow(Protocol):
    """A chat backend that knows its model's context, so requests can be checked before they queue."""

    context_tokens: int
    default_max_tokens: int

    async def count_prompt_tokens(self, messages: tuple[tuple[str, str], ...]) -> int:
        """Tokens the conversation takes in the model's context, prompt template included."""
        ...


def answer_tokens(asked: int | None, field: str, *, default: int, prompt: int, context: int,
                  limit: int | None) -> int:
    """The answer length to serve: `asked` (or `default`, cut to fit) within what the context leaves
    after the prompt and the server's `limit`; else a 400 naming the field and the cap."""
    room = context - prompt
    if room < 1:
        raise BadRequest(f"the prompt is {prompt} tokens; the model's context is {context} tokens, "
                         f"so at most {context - 1} prompt tokens fit with room for an answer", "messages")
    cap = min(room, limit) if limit is not None else room
    if asked is None:
        return min(default, cap)
    if asked > cap:
        why = ("the server's limit" if cap < room else
               f"the model's context of {context} tokens minus the prompt's {prompt}")
        raise BadRequest(f"'{field}' is {asked}; at most {cap} for this request ({why})", field)
    return asked


class Admission:
    """Service slots plus a bounded queue of waiting requests, and the per-request deadline.

    Past the queue a request is refused at once (429, `Retry-After` estimated from recent service
    times). A request that times out while served is answered 504, but its slot stays taken until
    the backend really finishes, so abandoned work still counts against capacity.
    """

    def __init__(self, slots: int | None, limits: ServeLimits, stats: ServerStats) -> None:
        self.slots = slots
        self.max_queue = limits.max_queue
        self.timeout_s = limits.request_timeout_s
        self.stats = stats
        self._gate = asyncio.Semaphore(slots) if slots else None
        self._mean_service_s = 0.0

    def report(self) -> dict[str, int | None]:
        """The queue's state for /health and /v1/models."""
        return {"queue_depth": self.stats.queue_depth, "max_queue": self.max_queue if self.slots else None,
                "in_flight": self.stats.in_flight, "max_concurrency": self.slots}

    def retry_after_s(self) -> int:
        """Whole seconds until a slot is likely free: the queue ahead, drained at the recent service rate."""
        per_slot = (self.stats.queue_depth + 1) / (self.slots or 1)
        return max(1, min(60, math.ceil(per_slot * self._mean_service_s)))

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        await self._enter(deadline)
        started = loop.time()
        stats = self.stats
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)

        def done(finished: asyncio.Future[T]) -> None:
            if not finished.cancelled():
                finished.exception()  # marks it seen: an abandoned (timed-out) request's error is not news
            stats.in_flight -= 1
            self._mean_service_s = 0.8 * self._mean_service_s + 0.2 * (loop.time() - started)
            if self._gate is not None:
                self._gate.release()

        task = asyncio.ensure_future(work())
        task.add_done_callback(done)
        try:
            return await asyncio.wait_for(asyncio.shield(task), max(0.0, deadline - loop.time()))
        except TimeoutError:
            self.stats.timed_out += 1
            raise RequestTimedOut(f"request not answered within the server's {self.timeout_s:g} s timeout") from None

    async def _enter(self, deadline: float) -> None:
        if self._gate is None:
            return
        stats = self.stats
        if self._gate.locked() and stats.queue_depth >= self.max_queue:
            stats.rejected += 1
            wait = self.retry_after_s()
            raise Overloaded(f"server busy: {stats.queue_depth} requests already waiting (the queue holds "
                             f"{self.max_queue}); retry after {wait} s", headers={"Retry-After": str(wait)})
        stats.queue_depth += 1
        try:
            async with asyncio.timeout_at(deadline):
                await self._gate.acquire()
        except TimeoutError:
            stats.timed_out += 1
            raise RequestTimedOut(f"request waited the server's whole {self.timeout_s:g} s timeout for a "
                                  "free slot") from None
        finally:
            stats.queue_depth -= 1
