"""Stream inputs through the stages on aaflow's executor, micro-batch by micro-batch.

LangChain values (dicts, messages, documents) stay Python objects in a row table; what moves
between stages is an Arrow batch of row numbers, so the core executor's bounded queues,
stage overlap, worker threads and reorder buffers apply unchanged. Each stage sees a
micro-batch as soon as the stage before has finished it: no barrier per step.
"""
from __future__ import annotations

import asyncio
import contextvars
import math
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
from langchain_core.runnables import RunnableConfig

from aaflow_core import Executor, Plan, Resources, Workflow, bind
from aaflow_adapters.langchain.hooks import install_hooks
from aaflow_adapters.langchain.loop_pool import budget_pool
from aaflow_adapters.langchain.remote import RemoteGate
from aaflow_adapters.langchain.stages import RunContext, Stage

ConfigFor = Callable[[int, int], RunnableConfig]  # (row, stage index) -> that row's config for the stage
ROW = "row"


@dataclass(frozen=True)
class Options:
    """Resources of one run; outputs depend on these and the inputs only."""

    batch_size: int
    in_flight: int
    deterministic: bool = True
    inputs: int | None = None  # the batch's size, when known

    def workers(self, stage: Stage) -> int:
        """Remote stages get enough workers to keep `in_flight` calls outstanding, and up to 4x that
        when the batch has more micro-batches, so a call waits on the budget, not on a worker (no
        rounds of micro-batches); local ones what they declare (deterministic) or one per core (call
        order of user functions may then vary)."""
        if stage.remote:
            least = max(1, math.ceil(self.in_flight / self.batch_size))
            batches = math.ceil(self.inputs / self.batch_size) if self.inputs else least
            return max(least, min(batches, 4 * least))
        return stage.workers if self.deterministic else max(stage.workers, os.cpu_count() or 1)


def build_workflow(stages: list[Stage], opts: Options, fns: list[Callable[[pa.RecordBatch], pa.RecordBatch]]) -> Workflow:
    workers = [opts.workers(s) for s in stages]
    wf = Workflow(Resources(threads=max(workers), queue_capacity=max(4, max(workers))))
    for k, (stage, fn, w) in enumerate(zip(stages, fns, workers, strict=True)):
        fn.__qualname__ = "stage"  # plan keys name the step, not the closure, so `describe` equals the run
        wf.map(fn, name=f"{k + 1}:{stage.label}", workers=w)
    return wf


def describe(stages: list[Stage], opts: Options) -> Plan:
    """The aaflow plan a run of these stages uses (plain data: printable, hashable)."""
    return build_workflow(stages, opts, [_passthrough() for _ in stages]).compile()


def _passthrough() -> Callable[[pa.RecordBatch], pa.RecordBatch]:
    def fn(batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch

    return fn


@dataclass
class _Rows:
    """The row table: current value per input, failures so far, and the stop flag for fail-fast."""

    values: list[Any]
    fail_fast: bool
    errors: dict[int, Exception] = field(default_factory=dict)
    abort: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self) -> dict[int, Exception]:
        with self.lock:
            return dict(self.errors)

    def stage_fn(self, k: int, stage: Stage, config_for: ConfigFor, rt: RunContext,
                 ctx: contextvars.Context) -> Callable[[pa.RecordBatch], pa.RecordBatch]:
        def fn(batch: pa.RecordBatch) -> pa.RecordBatch:
            rows = [] if self.abort.is_set() else batch.column(ROW).to_pylist()
            outs = ctx.copy().run(_in_run, stage, [self.values[r] for r in rows], [config_for(r, k) for r in rows], rt)
            for r, out in zip(rows, outs, strict=True):
                if isinstance(out, Exception):
                    with self.lock:
                        self.errors[r] = out
                    if self.fail_fast:
                        self.abort.set()
                else:
                    self.values[r] = out
            return _row_batch([r for r, out in zip(rows, outs) if not isinstance(out, Exception)])

        return fn


def _in_run(stage: Stage, values: list[Any], configs: list[RunnableConfig], rt: RunContext) -> list[Any]:
    rt.gate.enter()  # inside a context copy: calls the step makes here belong to the run
    return stage.run(values, configs, rt)


def _row_batch(rows: list[int] | range) -> pa.RecordBatch:
    return pa.record_batch([pa.array(rows, type=pa.int64())], names=[ROW])


def run_ahead(stages: list[Stage], values: list[Any], config_for: ConfigFor, rt: RunContext) -> list[Any]:
    """Stock's step barrier for the cheap leading steps: each over the whole batch in turn, and the
    first error in input order raised, as `RunnableSequence.batch` raises it, before any remote call."""
    rows = range(len(values))
    for k, stage in enumerate(stages):
        values = stage.run(values, [config_for(r, k) for r in rows], rt)
        if (error := next((v for v in values if isinstance(v, Exception)), None)) is not None:
            raise error
    return values


def stream_rows(stages: list[Stage], values: list[Any], config_for: ConfigFor, opts: Options, *,
                fail_fast: bool, loop: asyncio.AbstractEventLoop | None = None,
                per_input: bool = False) -> Iterator[tuple[int, Any]]:
    """Yield `(row, output or exception)` as micro-batches leave the last stage.

    With `fail_fast`, the first failure stops new work (LangChain's batch without
    `return_exceptions`) and the cheap steps before the first remote one run ahead for the whole
    batch (`run_ahead`); the caller decides what to raise. `loop`: the caller's loop under
    `abatch` (slow calls run there), None under `batch` (aaflow's loop thread). `per_input`: see RunContext.
    """
    table = _Rows(list(values), fail_fast)
    opts = replace(opts, inputs=len(values))
    install_hooks()
    rt = RunContext(gate=RemoteGate(opts.in_flight, loop, table.abort), asynchronous=loop is not None,
                    per_input=per_input)
    try:
        with budget_pool(rt.gate) if loop is not None else nullcontext():  # see loop_pool.py
            yield from _stream(stages, table, config_for, opts, rt)
    finally:
        rt.gate.close()


def _stream(stages: list[Stage], table: _Rows, config_for: ConfigFor, opts: Options,
            rt: RunContext) -> Iterator[tuple[int, Any]]:
    ahead = 0
    if table.fail_fast and not all(s.cheap for s in stages):
        while stages[ahead].cheap:
            ahead += 1
    if ahead:
        table.values = run_ahead(stages[:ahead], table.values, config_for, rt)
        stages = stages[ahead:]
    ctx = contextvars.copy_context()
    fns = [table.stage_fn(k + ahead, s, config_for, rt, ctx) for k, s in enumerate(stages)]
    wf = build_workflow(stages, opts, fns)
    plan = wf.compile()
    n, size = len(table.values), opts.batch_size
    source = (_row_batch(range(i, min(i + size, n))) for i in range(0, n, size))
    reported: set[int] = set()
    with Executor(bind(plan, wf.functions), backend="threads", queue_capacity=plan.resources.queue_capacity) as ex:
        for out in ex.run(source):
            yield from _new_errors(table, reported)
            for r in out.column(ROW).to_pylist():
                yield r, table.values[r]
    yield from _new_errors(table, reported)


def _new_errors(table: _Rows, reported: set[int]) -> Iterator[tuple[int, Exception]]:
    failed = table.failed()
    for r in sorted(set(failed) - reported):
        reported.add(r)
        yield r, failed[r]
