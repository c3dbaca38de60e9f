"""API keys for a served model: `Authorization: Bearer <key>` on every route but the health check.

Keys come from a file (one a line, `#` comments) and/or `AAFLOW_API_KEY` (comma-separated).
Only their SHA-256 digests are kept, and a presented key is compared with every one of them in
constant time, so neither timing nor a memory dump gives a key away.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable
from pathlib import Path

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from aaflow_core.errors import ConfigError
from aaflow_core.serve.limits import error_response

KEY_ENV = "AAFLOW_API_KEY"
OPEN_PATHS = frozenset({"/health"})


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    """The accepted keys, as digests; `accepts(token)` takes the same time whichever key matches."""

    def __init__(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for i, key in enumerate(keys):
            if not key or key != key.strip() or any(c.isspace() for c in key):
                raise ConfigError(f"api key #{i + 1}", "<hidden>", "must be non-empty with no whitespace")
        if not keys:
            raise ConfigError("api keys", [], "need at least one key")
        self._digests = tuple(_digest(k) for k in keys)

    def __len__(self) -> int:
        return len(self._digests)

    def accepts(self, token: str) -> bool:
        presented = _digest(token)
        matched = False
        for known in self._digests:  # no early exit: every key is compared
            matched |= hmac.compare_digest(known, presented)
        return matched

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return unauthorized("missing API key: send the header 'Authorization: Bearer <key>'")
        if not self.accepts(token.strip()):
            return unauthorized("incorrect API key provided")
        return await handler(request)


def unauthorized(message: str) -> web.Response:
    return error_response(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def load_keys(path: str | os.PathLike[str] | None = None, env: str | None = None) -> ApiKeys | None:
    """Keys from `path` and from `env` (the value of AAFLOW_API_KEY), or None when neither gives any."""
    keys: list[str] = []
    if path is not None:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError("api-key-file", str(path), f"cannot be read ({exc.strerror or exc})") from None
        keys += [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]
        if not keys:
            raise ConfigError("api-key-file", str(path), "holds no key (one a line; '#' starts a comment)")
    if env:
        keys += [k.strip() for k in env.split(",") if k.strip()]
    return ApiKeys(keys) if keys else None
