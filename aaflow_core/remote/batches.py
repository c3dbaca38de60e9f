"""OpenAI's Batch API from aaflow: upload a JSONL file, create a batch, poll it, download its results.

Half the price of synchronous calls for work that can wait. `BatchJobs.run(lines)` takes request
lines (`custom_id`, `method`, `url`, `body`), splits them to the service's limits (requests and
bytes per file), and returns every line's outcome keyed by `custom_id`. With a `ledger` folder
each file's batch is durable: the file id and batch id are written (fsync'd) as soon as they
exist and the downloaded results once they arrive, keyed by the file's own sha256, so a process
killed while waiting resumes polling the same batch instead of paying for it again.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from aaflow_core.errors import ConfigError, EndpointError
from aaflow_core.remote.config import Endpoint
from aaflow_core.remote.limiter import retry_after_s
from aaflow_core.stores.journal import write_durably

TERMINAL = ("completed", "failed", "expired", "cancelled")


@dataclass(frozen=True)
class BatchLimits:
    """The service's limits and how patiently to poll (OpenAI: 50 000 requests, 200 MB per file)."""

    max_requests: int = 50_000
    max_file_bytes: int = 200 * 2**20
    completion_window: str = "24h"
    poll_s: float = 10.0
    max_poll_s: float = 120.0

    def __post_init__(self) -> None:
        if self.max_requests < 1 or self.max_file_bytes < 1:
            raise ConfigError("max_requests/max_file_bytes", (self.max_requests, self.max_file_bytes), "must be >= 1")
        if not 0 < self.poll_s <= self.max_poll_s:
            raise ConfigError("poll_s", self.poll_s, "need 0 < poll_s <= max_poll_s")


@dataclass
class BatchUsage:
    files: int = 0
    batches: int = 0
    resumed: int = 0  # batches found in the ledger: polled or read, never created again
    lines: int = 0
    polls: int = 0


def encode(lines: list[dict[str, Any]]) -> list[bytes]:
    return [(json.dumps(line, sort_keys=True, separators=(",", ":")) + "\n").encode() for line in lines]


def split(encoded: list[bytes], limits: BatchLimits) -> Iterator[tuple[int, int]]:
    """(start, stop) ranges of lines, each within the per-file request and byte limits."""
    start, size = 0, 0
    for i, line in enumerate(encoded):
        if len(line) > limits.max_file_bytes:
            raise ConfigError("max_file_bytes", limits.max_file_bytes, f"request line {i} alone is {len(line)} bytes")
        if i > start and (i - start >= limits.max_requests or size + len(line) > limits.max_file_bytes):
            yield start, i
            start, size = i, 0
        size += len(line)
    if start < len(encoded):
        yield start, len(encoded)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError)) or (
        isinstance(exc, EndpointError) and exc.retryable)


@dataclass
class BatchJobs:
    endpoint: Endpoint
    limits: BatchLimits = BatchLimits()
    ledger: Path | None = None
    progress: bool = False
    usage: BatchUsage = field(default_factory=BatchUsage)

    async def run(self, lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Every line's output or error line, keyed by custom_id (a line the service lost is absent)."""
        encoded = encode(lines)
        headers = {k: v for k, v in self.endpoint.request_headers().items() if k != "Content-Type"}
        timeout = aiohttp.ClientTimeout(total=self.endpoint.timeout_s)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            parts = await asyncio.gather(*(self._one(session, b"".join(encoded[a:b])) for a, b in split(encoded, self.limits)))
        return {line["custom_id"]: line for part in parts for line in part}

    async def _one(self, session: aiohttp.ClientSession, content: bytes) -> list[dict[str, Any]]:
        key = hashlib.sha256(content).hexdigest()[:32]
        state = self._load(key)
        if "results" in state:
            self.usage.resumed += 1
            return state["results"]
        if "batch_id" in state:
            self.usage.resumed += 1
        else:
            state["file_id"] = (await self._request(session, "POST", "/files", data=self._form(content, key)))["id"]
            self.usage.files += 1
            self._save(key, state)
            body = {"input_file_id": state["file_id"], "endpoint": "/v1/chat/completions",
                    "completion_window": self.limits.completion_window, "metadata": {"aaflow_file": key}}
            state["batch_id"] = (await self._request(session, "POST", "/batches", json=body))["id"]
            self.usage.batches += 1
            self.usage.lines += content.count(b"\n")
            self._save(key, state)
        batch = await self._poll(session, state["batch_id"], content.count(b"\n"))
        if batch["status"] == "failed":
            raise EndpointError(None, f"batch {batch['id']} failed: {batch.get('errors')}", retryable=False)
        results: list[dict[str, Any]] = []
        for file_id in (batch.get("output_file_id"), batch.get("error_file_id")):
            if file_id:
                text = await self._request(session, "GET", f"/files/{file_id}/content", raw=True)
                results.extend(json.loads(x) for x in text.splitlines() if x.strip())
        state["results"] = results
        self._save(key, state)
        return results

    async def _poll(self, session: aiohttp.ClientSession, batch_id: str, total: int) -> dict[str, Any]:
        from tqdm.auto import tqdm

        wait = min(self.limits.poll_s, self.limits.max_poll_s)
        with tqdm(total=total, desc=f"batch {batch_id}", disable=not self.progress, leave=False) as bar:
            while True:
                batch = await self._request(session, "GET", f"/batches/{batch_id}")
                self.usage.polls += 1
                counts = batch.get("request_counts") or {}
                bar.n = counts.get("completed", 0) + counts.get("failed", 0)
                bar.refresh()
                if batch["status"] in TERMINAL:
                    return batch
                await asyncio.sleep(wait)
                wait = min(wait * 1.5, self.limits.max_poll_s)

    @staticmethod
    def _form(content: bytes, key: str) -> aiohttp.FormData:
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", content, filename=f"aaflow-{key}.jsonl", content_type="application/jsonl")
        return form

    async def _request(self, session: aiohttp.ClientSession, method: str, path: str, *, raw: bool = False,
                       **kwargs: Any) -> Any:
        url = f"{self.endpoint.base_url}{path}"
        retries = self.endpoint.retries
        async for attempt in AsyncRetrying(stop=stop_after_attempt(retries.attempts), reraise=True,
                                           wait=wait_exponential(multiplier=retries.initial_s, max=retries.max_s),
                                           retry=retry_if_exception(_retryable)):
            with attempt:
                async with session.request(method, url, **kwargs) as res:
                    text = await res.text()
                    if res.status >= 400:
                        raise EndpointError(res.status, f"{method} {path}: {text[:300]}",
                                            retryable=res.status == 429 or res.status >= 500,
                                            retry_after_s=retry_after_s(res.headers))
                    return text if raw else json.loads(text)
        raise AssertionError("unreachable")  # AsyncRetrying re-raises the last error

    def _load(self, key: str) -> dict[str, Any]:
        if self.ledger is None or not (self.ledger / f"{key}.json").exists():
            return {}
        try:
            return json.loads((self.ledger / f"{key}.json").read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError("ledger", str(self.ledger / f"{key}.json"), f"unreadable batch record ({exc})") from None

    def _save(self, key: str, state: dict[str, Any]) -> None:
        if self.ledger is not None:
            self.ledger.mkdir(parents=True, exist_ok=True)
            write_durably(self.ledger / f"{key}.json", json.dumps(state).encode())
