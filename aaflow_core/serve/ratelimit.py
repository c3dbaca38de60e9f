"""A rate-limited endpoint: admit `limit` requests per rolling `window_s`, answer the rest 429.

As hosted APIs do, every answer carries `x-ratelimit-limit-requests`,
`x-ratelimit-remaining-requests` and `x-ratelimit-reset-requests` (time until a slot frees,
"120ms"), and a 429 adds `retry-after-ms` and `retry-after` (whole seconds, rounded up).
What the limiter tests and the rate-limit benchmark run against on 127.0.0.1.
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web

from aaflow_core.serve.limits import error_response
from aaflow_core.serve.faults import Handler


@dataclass
class RollingWindow:
    """`admitted`/`rejected` count requests; `max_in_window` is the most admitted in any window."""

    limit: int = 40
    window_s: float = 1.0
    path_suffix: str = ""
    admitted: int = 0
    rejected: int = 0
    max_in_window: int = 0
    _stamps: deque[float] = field(default_factory=deque)

    def _headers(self, now: float) -> dict[str, str]:
        reset_ms = max(0, math.ceil((self._stamps[0] + self.window_s - now) * 1000)) if self._stamps else 0
        return {"x-ratelimit-limit-requests": str(self.limit),
                "x-ratelimit-remaining-requests": str(max(0, self.limit - len(self._stamps))),
                "x-ratelimit-reset-requests": f"{reset_ms}ms"}

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.endswith(self.path_suffix) or request.method != "POST":
            return await handler(request)
        now = time.monotonic()
        while self._stamps and self._stamps[0] <= now - self.window_s:
            self._stamps.popleft()
        if len(self._stamps) >= self.limit:
            self.rejected += 1
            headers = self._headers(now)
            wait_ms = int(headers["x-ratelimit-reset-requests"][:-2])
            headers.update({"retry-after-ms": str(wait_ms), "retry-after": str(math.ceil(wait_ms / 1000))})
            return error_response(429, f"Rate limit reached: {self.limit} requests per {self.window_s:g}s",
                                  kind="requests", code="rate_limit_exceeded", headers=headers)
        self._stamps.append(now)
        self.admitted += 1
        self.max_in_window = max(self.max_in_window, len(self._stamps))
        headers = self._headers(now)
        response = await handler(request)
        response.headers.update(headers)
        return response


def rate_limit(app: web.Application, limit: int = 40, window_s: float = 1.0, path_suffix: str = "") -> RollingWindow:
    """Install a rolling-window limit on an app that has not started yet; returns it for its counters."""
    gate = RollingWindow(limit, window_s, path_suffix)
    app.middlewares.append(gate.middleware)
    return gate
