"""Fault injection for a served app: answer chosen requests of a route with a fault.

What the retry tests and a user's own resilience checks need: a real server that says 429
(with Retry-After) or 5xx, stalls past the client's timeout, resets the connection, or
answers 200 with a malformed body, a known number of times before it serves normally.
`FailFirst` covers the error statuses; `FaultScript` plays any sequence of the five faults.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from aaflow_core.serve.limits import error_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FailFirst:
    """Fail the first `count` requests whose path ends with `path_suffix`; `injected` counts them."""

    count: int
    status: int = 429
    retry_after_s: float | None = None
    path_suffix: str = "/chat/completions"
    injected: int = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.injected < self.count and request.path.endswith(self.path_suffix):
            self.injected += 1
            headers = {"Retry-After": f"{self.retry_after_s:g}"} if self.retry_after_s is not None else None
            kind = "rate_limit_exceeded" if self.status == 429 else "server_error"
            return error_response(self.status, f"injected fault {self.injected}/{self.count}", kind=kind,
                                  code=kind, headers=headers)
        return await handler(request)


def inject(app: web.Application, fault: FailFirst) -> FailFirst:
    """Install `fault` on an app that has not started yet; returns it for its counter."""
    app.middlewares.append(fault.middleware)
    return fault


FAULT_KINDS = ("429", "5xx", "timeout", "reset", "malformed")


@dataclass(frozen=True)
class Fault:
    """One injected answer. `timeout` stalls `stall_s` (longer than the client waits), then serves."""

    kind: str
    status: int = 503
    retry_after_s: float | None = None
    stall_s: float = 2.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; choose from {FAULT_KINDS}")


@dataclass
class FaultScript:
    """Answer the matching requests, in arrival order, with `faults`, then serve normally.

    `seen` lists the kinds injected (and "ok" for the requests served), in order.
    """

    faults: Sequence[Fault]
    path_suffix: str = "/embeddings"
    seen: list[str] = field(default_factory=list)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.endswith(self.path_suffix):
            return await handler(request)
        index = sum(1 for s in self.seen if s != "ok")
        if index >= len(self.faults):
            self.seen.append("ok")
            return await handler(request)
        fault = self.faults[index]
        self.seen.append(fault.kind)
        return await play(fault, request, handler)


async def play(fault: Fault, request: web.Request, handler: Handler) -> web.StreamResponse:
    if fault.kind == "429":
        headers = {"Retry-After": f"{fault.retry_after_s:g}"} if fault.retry_after_s is not None else None
        return error_response(429, "injected rate limit", kind="rate_limit_exceeded", code="rate_limit_exceeded",
                              headers=headers)
    if fault.kind == "5xx":
        return error_response(fault.status, "injected server error", kind="server_error", code="server_error")
    if fault.kind == "timeout":
        await request.read()  # before the client gives up, so the server side stays quiet
        await asyncio.sleep(fault.stall_s)
        return await handler(request)
    if fault.kind == "reset":
        await request.read()
        assert request.transport is not None
        request.transport.abort()  # the client sees the connection dropped mid-request
        return web.Response(status=500)
    return web.Response(status=200, text='{"object": "list", "data": [{"embedding": ', content_type="application/json")


def script(app: web.Application, faults: Sequence[Fault], path_suffix: str = "/embeddings") -> FaultScript:
    """Install a fault script on an app that has not started yet; returns it for its `seen` log."""
    plan = FaultScript(list(faults), path_suffix)
    app.middlewares.append(plan.middleware)
    return plan
