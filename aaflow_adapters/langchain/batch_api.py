"""`AAFlowRunnable(chain, remote="batch-api")`: a chain's model calls at Batch API prices, same outputs.

Every input's chain runs at once (its own `ainvoke`, so its steps, callbacks and parsing are
stock's). When an input reaches a `ChatOpenAI` call that the lean path covers (lean_openai.py),
the request, built by the model's own payload code, is held instead of sent; once every input
still running waits on such a request (or `max_wait_s` passes with no new one), the held
requests become one Batch API job (split to the service's limits, aaflow_core.remote.batches),
and each answer is parsed by the model's own result code and the input's chain goes on. A
two-model chain gives two jobs. Lines the service failed or lost are retried through the normal
synchronous path; a request aaflow cannot batch (a fallback reason in lean_openai.py) is sent
synchronously as usual. `batch_dir` makes the jobs durable: a process killed while waiting
resumes polling the same batches on the next call instead of paying again.

Request lines are ordered by their body (canonical JSON), so a job's file, and so its ledger key,
depend on the inputs only, not on which input's step happened to finish first.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from aaflow_adapters.langchain.graphs import PerInputStage, run_each
from aaflow_adapters.langchain.hooks import install_hooks
from aaflow_adapters.langchain.remote import Aborted, RemoteGate
from aaflow_core.remote import BatchJobs, BatchLimits, BatchUsage, Endpoint, shared_client


@dataclass
class BatchRunUsage:
    """Requests sent as Batch API lines vs synchronously, and the jobs behind them."""

    batch_requests: int = 0
    sync_requests: int = 0  # requests aaflow could not batch, and failed or lost lines retried
    prompt_tokens: int = 0
    completion_tokens: int = 0
    jobs: BatchUsage | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BatchGate(RemoteGate):
    """The run's gate (every input in flight at once) that holds routed chat requests for a batch."""

    def __init__(self, inputs: int, *, limits: BatchLimits, ledger: Path | None, progress: bool,
                 max_wait_s: float) -> None:
        super().__init__(max(1, inputs))
        self.limits, self.ledger, self.progress, self.max_wait_s = limits, ledger, progress, max_wait_s
        self.active = 0  # inputs whose chain is running
        self.waiting = 0  # of them, waiting on a held request (pending or in a job)
        self.pending: list[tuple[Endpoint, dict[str, Any], asyncio.Future[dict[str, Any]]]] = []
        self.rounds = 0
        self.usage = BatchRunUsage(jobs=BatchUsage())
        self._settling = False
        self._jobs: set[asyncio.Task[None]] = set()

    async def acall(self, thunk: Any) -> Any:
        self.active += 1
        try:
            return await super().acall(thunk)
        finally:
            self.active -= 1
            self._maybe_flush()

    async def send_chat(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending.append((endpoint, body, future))
        self.waiting += 1
        self._maybe_flush()
        try:
            return await future
        finally:
            self.waiting -= 1

    def _maybe_flush(self) -> None:
        if self.pending and not self._settling:
            self._settling = True
            asyncio.get_running_loop().create_task(self._settle())

    async def _settle(self) -> None:
        """Wait until every running input waits on a request (or no new one came for max_wait_s)."""
        try:
            idle, seen = 0.0, len(self.pending)
            while self.pending and self.waiting < self.active and idle < self.max_wait_s:
                await asyncio.sleep(0.02)
                idle = 0.0 if len(self.pending) != seen else idle + 0.02
                seen = len(self.pending)
            await asyncio.sleep(0.01)  # inputs released in the same turn reach their calls first
        finally:
            self._settling = False
        held, self.pending = self.pending, []
        if held:
            task = asyncio.get_running_loop().create_task(self._job(held))
            self._jobs.add(task)
            task.add_done_callback(self._jobs.discard)
        if self.pending:
            self._maybe_flush()

    async def _job(self, held: list[tuple[Endpoint, dict[str, Any], asyncio.Future[dict[str, Any]]]]) -> None:
        self.rounds += 1
        held.sort(key=lambda h: json.dumps(h[1], sort_keys=True))
        by_endpoint: dict[str, list[int]] = {}
        for k, (endpoint, _, _) in enumerate(held):
            by_endpoint.setdefault(endpoint.key, []).append(k)
        for ks in by_endpoint.values():
            endpoint = held[ks[0]][0]
            lines = [{"custom_id": f"r{self.rounds}-{k:06d}", "method": "POST", "url": "/v1/chat/completions",
                      "body": held[k][1]} for k in ks]
            jobs = BatchJobs(endpoint, self.limits, self.ledger, self.progress, self.usage.jobs)  # type: ignore[arg-type]
            try:
                results = await jobs.run(lines)
            except Exception as exc:  # noqa: BLE001 - every input of the job gets the error
                for k in ks:
                    held[k][2].set_exception(exc)
                continue
            await asyncio.gather(*(self._answer(held[k], results.get(line["custom_id"]))
                                   for k, line in zip(ks, lines)))

    async def _answer(self, held: tuple[Endpoint, dict[str, Any], asyncio.Future[dict[str, Any]]],
                      line: dict[str, Any] | None) -> None:
        endpoint, body, future = held
        response = (line or {}).get("response") or {}
        try:
            if response.get("status_code") == 200:
                answer = response["body"]
                self.usage.batch_requests += 1
            else:  # failed, expired or lost by the service: the normal path, never dropped
                answer = await shared_client().chat(endpoint, body)
                self.usage.sync_requests += 1
            usage = answer.get("usage") or {}
            self.usage.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.usage.completion_tokens += int(usage.get("completion_tokens") or 0)
            future.set_result(answer)
        except Exception as exc:  # noqa: BLE001 - reaches this input only
            future.set_exception(exc)


def batch_api_run(runnable: Runnable[Any, Any], inputs: Sequence[Any], configs: Sequence[RunnableConfig], *,
                  return_exceptions: bool, limits: BatchLimits, ledger: str | None, progress: bool,
                  max_wait_s: float) -> tuple[list[Any], BatchRunUsage]:
    """Outputs in input order (exceptions in place with `return_exceptions`), and what was sent how."""
    install_hooks()
    gate = BatchGate(len(inputs), limits=limits, ledger=Path(ledger) if ledger else None, progress=progress,
                     max_wait_s=max_wait_s)
    outputs: list[Any] = [None] * len(inputs)

    def emit(i: int, out: Any) -> None:
        outputs[i] = out

    stage = PerInputStage(runnable, "ainvoke")
    try:
        gate.on_loop(run_each(stage, inputs, configs, gate, emit, fail_fast=not return_exceptions))
    finally:
        gate.close()
    if not return_exceptions:
        failed = [o for o in outputs if isinstance(o, Exception) and not isinstance(o, Aborted)]
        if failed:
            raise failed[0]
    return outputs, gate.usage
