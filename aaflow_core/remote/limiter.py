"""One limiter per endpoint: how many requests may go now, and when the next may.

Three kinds of limit, all plain state on the client's event loop:
- token buckets for the user's `rpm`/`tpm` (tokens estimated from the payload before a
  request, corrected from the response's `usage` after it);
- the server's own word: `x-ratelimit-remaining-*` / `x-ratelimit-reset-*` headers (requests
  sent since a response are subtracted from the remaining count it reports) and
  `retry-after-ms` / `retry-after` on a 429, which pauses the whole endpoint;
- an adaptive in-flight window: it starts at `Limits.initial_in_flight`, grows by one per
  success until the first 429 (slow start), then by one per window of successes; a 429 halves
  it (once per congestion event); never above `Limits.max_in_flight`.
`reconfigure` swaps in other `Limits` (a later call for the same endpoint gave them): the
buckets are rebuilt for a changed rate, the window is clamped to the new ceiling and, until a
429 has been seen, raised to the new start.
Timing decides when a request goes, never what it carries or where its answer lands.
"""
from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aaflow_core.remote.config import Limits

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration_s(value: str | None) -> float | None:
    """`x-ratelimit-reset-*` values: "1s", "6m0s", "20ms", "1.5" (seconds); None if unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds a 429/503 asks the client to wait: `retry-after-ms` first, then `retry-after`."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    seconds = headers.get("retry-after")
    if seconds is not None:
        try:
            return max(0.0, float(seconds))
        except ValueError:
            return None  # an HTTP date: rare from model APIs; fall back to backoff
    return None


class TokenBucket:
    """`rate` units per second, at most `capacity` saved up; a cost above capacity waits for a full bucket."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, capacity)
        self.level = self.capacity
        self.stamp = time.monotonic()

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_s(self, now: float, cost: float) -> float:
        self._refill(now)
        need = min(cost, self.capacity) - self.level
        return 0.0 if need <= 0 else need / self.rate

    def take(self, cost: float) -> None:
        self.level -= min(cost, self.capacity)

    def adjust(self, delta: float) -> None:
        """Correct an estimate once the real cost is known (positive delta: it cost more)."""
        self.level = min(self.capacity, self.level - delta)


class HeaderBudget:
    """What the server last said remains (requests or tokens) until its reset time."""

    def __init__(self) -> None:
        self.remaining: float | None = None
        self.reset_at = 0.0
        self.sent = 0.0  # units sent so far: a response's count excludes what was sent after its request

    def wait_s(self, now: float, cost: float) -> float:
        if self.remaining is None or now >= self.reset_at:
            self.remaining = None
            return 0.0
        return 0.0 if self.remaining >= cost else self.reset_at - now

    def take(self, cost: float) -> float:
        """Record a send; returns the mark to give `update` with its response."""
        mark = self.sent
        self.sent += cost
        if self.remaining is not None:
            self.remaining -= cost
        return mark

    def update(self, now: float, remaining: str | None, reset: str | None, mark: float, cost: float) -> None:
        try:
            left = float(remaining) if remaining is not None else None
        except ValueError:
            left = None
        reset_s = parse_duration_s(reset)
        if left is None or reset_s is None:
            return
        self.remaining = left - (self.sent - mark - cost)
        self.reset_at = now + reset_s


@dataclass
class Ticket:
    """One admitted request: what it was charged, for the correction when its answer comes."""

    tokens: float
    request_mark: float
    token_mark: float


def _bucket(per_minute: float | None, burst_s: float) -> TokenBucket | None:
    return TokenBucket(per_minute / 60.0, per_minute / 60.0 * burst_s) if per_minute else None


class Limiter:
    """Admission for one endpoint: `await acquire(tokens)` then `release(ticket, ...)`."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.window = float(limits.initial_in_flight or min(64, limits.max_in_flight))
        self.in_flight = 0
        self.paused_until = 0.0
        self._last_cut = -math.inf
        self.rpm = _bucket(limits.rpm, limits.burst_s)
        self.tpm = _bucket(limits.tpm, limits.burst_s)
        self.requests = HeaderBudget()
        self.tokens = HeaderBudget()
        self._freed = asyncio.Event()

    def reconfigure(self, limits: Limits) -> None:
        """Apply `limits` from now on; what the server said (headers, pauses, a learned window) stays."""
        old, self.limits = self.limits, limits
        if (limits.rpm, limits.burst_s) != (old.rpm, old.burst_s):
            self.rpm = _bucket(limits.rpm, limits.burst_s)
        if (limits.tpm, limits.burst_s) != (old.tpm, old.burst_s):
            self.tpm = _bucket(limits.tpm, limits.burst_s)
        if self._last_cut == -math.inf:  # no 429 yet: start at least where the new limits start
            self.window = max(self.window, float(limits.initial_in_flight or min(64, limits.max_in_flight)))
        self.window = min(self.window, float(limits.max_in_flight))
        self._freed.set()  # waiters re-check against the new window

    def _wait_s(self, now: float, tokens: float) -> float:
        waits = [self.paused_until - now, self.requests.wait_s(now, 1), self.tokens.wait_s(now, tokens)]
        if self.rpm is not None:
            waits.append(self.rpm.wait_s(now, 1))
        if self.tpm is not None:
            waits.append(self.tpm.wait_s(now, tokens))
        return max(waits)

    async def acquire(self, tokens: float) -> Ticket:
        while True:
            if self.in_flight >= max(1, int(self.window)):
                self._freed.clear()
                await self._freed.wait()
                continue
            now = time.monotonic()
            wait = self._wait_s(now, tokens)
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            self.in_flight += 1
            for bucket, cost in ((self.rpm, 1), (self.tpm, tokens)):
                if bucket is not None:
                    bucket.take(cost)
            return Ticket(tokens, self.requests.take(1), self.tokens.take(tokens))

    def release(self, ticket: Ticket, *, headers: Mapping[str, str] | None, status: int | None,
                used_tokens: float | None = None) -> None:
        """Account an answer (or a failure without one: `status=None`) and wake a waiter."""
        now = time.monotonic()
        self.in_flight -= 1
        if headers is not None:
            self.requests.update(now, headers.get("x-ratelimit-remaining-requests"),
                                 headers.get("x-ratelimit-reset-requests"), ticket.request_mark, 1)
            self.tokens.update(now, headers.get("x-ratelimit-remaining-tokens"),
                               headers.get("x-ratelimit-reset-tokens"), ticket.token_mark, ticket.tokens)
        if status == 429:
            self._rate_limited(now, retry_after_s(headers or {}))
        elif status is not None and status < 400:
            growth = 1.0 if self._last_cut == -math.inf else 1.0 / max(1.0, self.window)
            self.window = min(float(self.limits.max_in_flight), self.window + growth)
            if used_tokens is not None and self.tpm is not None:
                self.tpm.adjust(used_tokens - ticket.tokens)
        self._freed.set()

    def _rate_limited(self, now: float, wait_s: float | None) -> None:
        """Pause the endpoint for what the server asked; halve the window once per congestion event."""
        if wait_s is not None:
            self.paused_until = max(self.paused_until, now + wait_s)
        if now >= self._last_cut:
            self.window = max(1.0, self.window / 2.0)
            self._last_cut = max(self.paused_until, now + 0.05)
