"""Usage accounting per endpoint: counted on the client's loop, read as snapshots from anywhere."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass
class Usage:
    """What one endpoint was asked and answered.

    `requests` counts HTTP requests sent (every attempt), `retries` the attempts after an
    item's first, `rejections` the 429 answers, `errors` the other failed attempts, `failed`
    the items that gave up; tokens are the servers' `usage` figures.
    """

    endpoint: str = ""
    requests: int = 0
    retries: int = 0
    rejections: int = 0
    errors: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add_tokens(self, usage: Any) -> int | None:
        """Add a response's `usage`; returns its total tokens (None when the server sent none)."""
        if not isinstance(usage, dict):
            return None
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens") or 0
        if not isinstance(prompt, int) or not isinstance(completion, int):
            return None
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        return prompt + completion

    def snapshot(self) -> "Usage":
        return replace(self)

    def minus(self, before: "Usage") -> "Usage":
        """What happened since `before` (a snapshot of the same endpoint)."""
        fields = {k: v - getattr(before, k) for k, v in asdict(self).items() if isinstance(v, int)}
        return Usage(self.endpoint, **fields)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
