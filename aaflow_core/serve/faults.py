"""Fault injection for a served app: answer the first N requests of a route with an error status.

What the retry tests and a user's own resilience checks need: a real server that says 429
(with Retry-After) or 503 a known number of times before it serves normally.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from aaflow_core.serve.app import error_response

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
