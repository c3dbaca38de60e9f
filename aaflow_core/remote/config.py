"""What an endpoint is and what it allows: plain, frozen, validated data.

An `Endpoint` says where requests go and how they authenticate; `Limits` says how hard the
client may push it (requests in flight, requests and tokens per minute); `Retries` says how
long an item keeps trying. Two endpoints with the same URL, key and headers share one HTTP
session, one limiter and one usage record; each call's own limits, timeout and retries apply
to it (the limiter takes the latest call's limits).
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from aaflow_core.errors import ConfigError


@dataclass(frozen=True)
class Limits:
    """Caps for one endpoint. `None` leaves a limit to the server's headers and 429s.

    `max_in_flight` is the ceiling of the adaptive window: it starts at `initial_in_flight`
    (default: 64 or the ceiling if lower; give the ceiling to send everything at once), grows
    by one per success until the first 429, then halves on a 429 and grows by one per window.
    `burst_s`: how many seconds of `rpm`/`tpm` may go at once.
    """

    max_in_flight: int = 256
    initial_in_flight: int | None = None
    rpm: float | None = None
    tpm: float | None = None
    burst_s: float = 0.1

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ConfigError("max_in_flight", self.max_in_flight, "must be >= 1")
        if self.initial_in_flight is not None and not 1 <= self.initial_in_flight <= self.max_in_flight:
            raise ConfigError("initial_in_flight", self.initial_in_flight, "must be in 1..max_in_flight")
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(name, value, "must be > 0 or None")
        if self.burst_s <= 0:
            raise ConfigError("burst_s", self.burst_s, "must be > 0")


@dataclass(frozen=True)
class Retries:
    """How many times one item is sent: `attempts` for failures (5xx, timeouts, resets, malformed
    bodies), `rate_limited` more for 429s, which wait for the server's word, not a backoff."""

    attempts: int = 6
    rate_limited: int = 60
    initial_s: float = 0.05
    max_s: float = 10.0
    jitter_s: float = 0.05

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.rate_limited < 0:
            raise ConfigError("attempts/rate_limited", (self.attempts, self.rate_limited), "need >= 1 and >= 0")
        if self.initial_s < 0 or self.max_s < self.initial_s:
            raise ConfigError("initial_s/max_s", (self.initial_s, self.max_s), "need 0 <= initial_s <= max_s")


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible service: `base_url` ends before `/chat/completions` (e.g. ".../v1")."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    timeout_s: float = 60.0
    limits: Limits = Limits()
    retries: Retries = Retries()

    def __post_init__(self) -> None:
        if not isinstance(self.base_url, str) or not self.base_url.startswith(("http://", "https://")):
            raise ConfigError("base_url", self.base_url, "must be an http:// or https:// URL")
        if self.timeout_s <= 0:
            raise ConfigError("timeout_s", self.timeout_s, "must be > 0")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    @classmethod
    def of(cls, base_url: str | None, *, api_key: str | None = None, api_key_env: str = "OPENAI_API_KEY",
           headers: Mapping[str, str] | None = None, **kwargs: Any) -> "Endpoint":
        """An endpoint from loose values: the key from `api_key_env` when not given; OpenAI's URL by default."""
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        if base_url is None and key is None:
            raise ConfigError(api_key_env, None, "set it in the environment (or give the base URL of a local server)")
        return cls(base_url or "https://api.openai.com/v1", key, tuple(sorted((headers or {}).items())), **kwargs)

    @cached_property
    def key(self) -> str:
        """Identity for sharing a session/limiter/usage: URL, a hash of the key, the headers (computed once:
        it is looked up on every request)."""
        digest = hashlib.sha256(repr((self.api_key or "", self.headers)).encode()).hexdigest()[:12]
        return f"{self.base_url}#{digest}"

    def request_headers(self) -> dict[str, str]:
        out = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            out["Authorization"] = f"Bearer {self.api_key}"
        out.update(self.headers)
        return out
