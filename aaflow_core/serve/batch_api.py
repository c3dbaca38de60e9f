"""OpenAI's Batch API on a loopback server: files in, a batch job, files out (for tests and benchmarks).

`add_batch_api(app, chat)` adds `/v1/files` (multipart upload, purpose `batch`),
`/v1/files/{id}/content`, `/v1/batches` and `/v1/batches/{id}` to an app from `create_app`.
A batch goes validating -> in_progress -> completed once `processing_s` has passed since it was
created (it is worked out when first polled after that, through the same chat backend the
synchronous route uses, so both give the same answers); lines for which `fail(custom_id)` holds
land in the error file, as a hosted API reports failed requests. The service's limits are data:
more than `max_requests` lines or `max_file_bytes` bytes in one file is refused, as OpenAI does.
"""
from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from aaflow_core.serve.app import completion_body, parse_chat
from aaflow_core.serve.limits import error_response
from aaflow_core.serve.backends import ChatBackend


@dataclass
class BatchStats:
    uploads: int = 0
    batches: int = 0
    lines: int = 0
    polls: int = 0


@dataclass
class _Batch:
    body: dict[str, Any]
    created: float
    lines: list[dict[str, Any]]
    done: bool = False


@dataclass
class BatchService:
    chat: ChatBackend
    processing_s: float = 0.5
    fail: Callable[[str], bool] = lambda custom_id: False
    max_requests: int = 50_000
    max_file_bytes: int = 200 * 2**20
    stats: BatchStats = field(default_factory=BatchStats)
    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, _Batch] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=itertools.count)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):06d}"

    async def finish(self, batch: _Batch) -> None:
        """Answer every line through the chat backend; failures and bad lines go to the error file."""
        out, errors = [], []
        for line in batch.lines:
            cid = line["custom_id"]
            try:
                if self.fail(cid):
                    raise RuntimeError("the server failed this request")
                req = parse_chat(line["body"], max_messages=2**31)
                res = (await self.chat.complete([req]))[0]
                response = {"status_code": 200, "request_id": self.new_id("req"),
                            "body": completion_body(self.new_id("chatcmpl"), req, res)}
                out.append({"id": self.new_id("batch_req"), "custom_id": cid, "response": response, "error": None})
            except Exception as exc:  # noqa: BLE001 - a failed line is reported, not raised
                errors.append({"id": self.new_id("batch_req"), "custom_id": cid, "response": None,
                               "error": {"code": "server_error", "message": str(exc)}})
        body = batch.body
        body["output_file_id"] = self._store(out) if out else None
        body["error_file_id"] = self._store(errors) if errors else None
        body.update(status="completed", completed_at=int(time.time()),
                    request_counts={"total": len(batch.lines), "completed": len(out), "failed": len(errors)})
        batch.done = True

    def _store(self, lines: list[dict[str, Any]]) -> str:
        file_id = self.new_id("file")
        self.files[file_id] = "".join(json.dumps(x) + "\n" for x in lines).encode()
        return file_id


def parse_lines(data: bytes, max_requests: int) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in data.splitlines() if x.strip()]
    if len(lines) > max_requests:
        raise ValueError(f"{len(lines)} requests in one file; at most {max_requests}")
    seen: set[str] = set()
    for i, line in enumerate(lines):
        if line.get("method") != "POST" or line.get("url") != "/v1/chat/completions" or "custom_id" not in line:
            raise ValueError(f"line {i + 1}: needs custom_id, method POST and url /v1/chat/completions")
        if line["custom_id"] in seen:
            raise ValueError(f"line {i + 1}: custom_id {line['custom_id']!r} is not unique")
        seen.add(line["custom_id"])
    return lines


def add_batch_api(app: web.Application, chat: ChatBackend, **options: Any) -> BatchService:
    """Add the Batch API routes to `app`; the returned service holds its files, batches and stats."""
    service = BatchService(chat, **options)

    async def upload(request: web.Request) -> web.Response:
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if purpose != "batch" or not isinstance(upload, web.FileField):
            return error_response(400, "multipart form needs purpose=batch and a file", param="file")
        data = upload.file.read()
        if len(data) > service.max_file_bytes:
            return error_response(400, f"file is {len(data)} bytes; at most {service.max_file_bytes}", param="file")
        file_id = service.new_id("file")
        service.files[file_id] = data
        service.stats.uploads += 1
        return web.json_response({"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                                  "filename": upload.filename, "purpose": "batch"})

    async def content(request: web.Request) -> web.Response:
        data = service.files.get(request.match_info["file_id"])
        if data is None:
            return error_response(404, "no such file", param="file_id")
        return web.Response(body=data, content_type="application/jsonl")

    async def create(request: web.Request) -> web.Response:
        body = await request.json()
        data = service.files.get(body.get("input_file_id", ""))
        if data is None:
            return error_response(400, "input_file_id names no uploaded file", param="input_file_id")
        if body.get("endpoint") != "/v1/chat/completions":
            return error_response(400, "only /v1/chat/completions batches are served", param="endpoint")
        try:
            lines = parse_lines(data, service.max_requests)
        except (ValueError, json.JSONDecodeError) as exc:
            return error_response(400, f"input file: {exc}", param="input_file_id")
        batch_id = service.new_id("batch")
        record = {"id": batch_id, "object": "batch", "endpoint": body["endpoint"], "input_file_id": body["input_file_id"],
                  "completion_window": body.get("completion_window", "24h"), "status": "validating",
                  "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
                  "metadata": body.get("metadata"), "request_counts": {"total": len(lines), "completed": 0, "failed": 0}}
        service.batches[batch_id] = _Batch(record, time.monotonic(), lines)
        service.stats.batches += 1
        service.stats.lines += len(lines)
        return web.json_response(record)

    async def status(request: web.Request) -> web.Response:
        batch = service.batches.get(request.match_info["batch_id"])
        if batch is None:
            return error_response(404, "no such batch", param="batch_id")
        service.stats.polls += 1
        if not batch.done:
            if time.monotonic() - batch.created >= service.processing_s:
                await service.finish(batch)
            else:
                batch.body["status"] = "in_progress"
        return web.json_response(batch.body)

    app.router.add_post("/v1/files", upload)
    app.router.add_get("/v1/files/{file_id}/content", content)
    app.router.add_post("/v1/batches", create)
    app.router.add_get("/v1/batches/{batch_id}", status)
    return service
