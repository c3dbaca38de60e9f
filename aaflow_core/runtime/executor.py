"""One scheduling algorithm, two drivers: `serial` (the reference) and `threads` (streaming).

Every stage runs the same steps over explicit per-stage state (`StageRun`): take the next input
from its inbox, process it, put the result in a reorder buffer, emit outputs in input order with
fresh sequence keys, and once the input ends, drain the stage and pass the end on. A driver only
decides who takes the steps. `threads` gives each stage `workers` threads and bounded queues:
stages overlap, a full queue blocks its producer (backpressure), memory stays bounded by
`queue_capacity` batches per stage. `serial` is the same algorithm with one worker for the whole
pipeline, the caller's thread, which steps the earliest stage that has input (its queues are
unbounded, so it never waits on itself). Timing decides what runs next, never what comes out;
the conformance tests hold both drivers to identical output.
"""
from __future__ import annotations

import queue
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from aaflow_core.dataplane.batch import SeqBatch
from aaflow_core.errors import AAFlowError, OperatorError
from aaflow_core.operators.base import Operator
from aaflow_core.plan import OpSpec
from aaflow_core.runtime.rebatch import Rebatch

END = object()
POLL_S = 0.05
OnBatch = Callable[[str, int], None]


@dataclass
class StageStats:
    name: str
    busy_s: float = 0.0
    batches: int = 0
    rows_in: int = 0
    rows_out: int = 0


def first_item(batch: pa.RecordBatch) -> str | None:
    """A name for the batch in error messages: its first source, document or chunk."""
    for column in ("source", "doc_id", "chunk_id", "path"):
        if column in batch.schema.names and batch.num_rows:
            return str(batch.column(column)[0].as_py())
    return None


@dataclass
class Stage:
    """Uniform push/drain view over an operator or a rebatcher, with its own accounting."""

    spec: OpSpec
    impl: Operator | Rebatch
    stats: StageStats = field(init=False)

    def __post_init__(self) -> None:
        self.stats = StageStats(self.impl.name)

    @property
    def workers(self) -> int:
        return 1 if isinstance(self.impl, Rebatch) else self.spec.workers

    def push(self, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        t0 = time.perf_counter()
        try:
            if isinstance(self.impl, Rebatch):
                out = self.impl.push(batch)
            else:
                out = [self.impl.process(batch)]
        except AAFlowError:
            raise
        except Exception as exc:
            raise OperatorError(self.impl.name, first_item(batch), exc) from exc
        finally:
            self.stats.busy_s += time.perf_counter() - t0
        self.stats.batches += 1
        self.stats.rows_in += batch.num_rows
        self.stats.rows_out += sum(b.num_rows for b in out)
        return out

    def drain(self) -> list[pa.RecordBatch]:
        out = self.impl.drain() if isinstance(self.impl, Rebatch) else []
        self.stats.rows_out += sum(b.num_rows for b in out)
        return out


class Executor:
    """Context manager: opens operators on enter, closes them on exit, runs batches in between."""

    def __init__(self, stages: list[tuple[OpSpec, Operator | Rebatch]], *, backend: str = "threads",
                 queue_capacity: int = 4, on_batch: OnBatch | None = None) -> None:
        if backend not in EXECUTOR_BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {sorted(EXECUTOR_BACKENDS)}")
        self.stages = [Stage(spec, impl) for spec, impl in stages]
        self.backend = backend
        self.queue_capacity = queue_capacity
        self.on_batch = on_batch
        self._opened: list[Operator] = []

    @property
    def operators(self) -> dict[str, Operator]:
        return {s.impl.name: s.impl for s in self.stages if isinstance(s.impl, Operator)}

    @property
    def stats(self) -> dict[str, StageStats]:
        return {s.stats.name: s.stats for s in self.stages}

    def __enter__(self) -> "Executor":
        try:
            for op in self.operators.values():
                op.open()
                self._opened.append(op)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for op in reversed(self._opened):
            op.close()
        self._opened.clear()

    def run(self, source: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Yield the last stage's output batches in input order; operators finish at the end."""
        yield from EXECUTOR_BACKENDS[self.backend](self, source)
        for op in self.operators.values():
            op.finish()


class Run:
    """What one run's stages share: the queues between them, the first error, a stop flag."""

    def __init__(self, ex: Executor, queues: list[Any]) -> None:
        self.queues = queues  # queues[i] feeds stage i; the last one holds the run's output
        self.on_batch = ex.on_batch
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.error_tb = ""
        self._lock = threading.Lock()

    def stage_runs(self, ex: Executor) -> list[StageRun]:
        """Each stage's state between its inbox and outbox, with `workers` threads taking from a window."""
        return [StageRun(stage, self.queues[i], self.queues[i + 1], stage.workers,
                         window=threading.Semaphore(2 * stage.workers)) for i, stage in enumerate(ex.stages)]

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error, self.error_tb = exc, traceback.format_exc()
        self.stop.set()

    def put(self, q: queue.Queue[Any], item: object) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def get(self, q: queue.Queue[Any]) -> object:
        while not self.stop.is_set():
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                continue
        return END


@dataclass
class StageRun:
    """One stage's scheduling state for one run, shared by the stage's workers."""

    stage: Stage
    inbox: queue.Queue[Any]
    outbox: queue.Queue[Any]
    workers: int
    next_seq: int = 0  # the input whose output goes out next (head of the reorder buffer)
    out_seq: int = 0  # sequence key of the next output batch
    retired: int = 0  # workers that have stopped
    ended: bool = False  # the end marker has been taken from the inbox
    ready: dict[int, list[pa.RecordBatch]] = field(default_factory=dict)  # the reorder buffer
    take_lock: threading.Lock = field(default_factory=threading.Lock)
    emit_lock: threading.Lock = field(default_factory=threading.Lock)
    # Inputs taken but not yet emitted: bounds the reorder buffer when one worker lags
    # (None for the serial driver, whose one worker hands `process` each input in order).
    window: threading.Semaphore | None = None

    def take(self, run: Run) -> SeqBatch | None:
        """The next input for one of several workers (window, then inbox); None once the input ended."""
        assert self.window is not None, "take() is for drivers with a window (threads)"
        while not self.window.acquire(timeout=POLL_S):
            if run.stop.is_set():
                return None
        with self.take_lock:
            if self.ended:
                return None
            item = run.get(self.inbox)
            if item is END:
                self.ended = True
                return None
        assert isinstance(item, SeqBatch)
        return item

    def process(self, run: Run, item: SeqBatch) -> bool:
        """The algorithm's step: process one input, then emit every output now in input order.

        False when the run stopped while emitting.
        """
        out = self.stage.push(item.batch)
        with self.emit_lock:
            self.ready[item.seq] = out
            while self.next_seq in self.ready:
                if not self.emit(run, self.ready.pop(self.next_seq)):
                    return False
                self.next_seq += 1
                if self.window is not None:
                    self.window.release()
        return True

    def retire(self, run: Run) -> None:
        """A worker stops; the last one drains the stage and passes the end on (unless the run stopped)."""
        with self.emit_lock:
            self.retired += 1
            last = self.retired == self.workers
        if last and not run.stop.is_set() and self.emit(run, self.stage.drain()):
            run.put(self.outbox, END)

    def emit(self, run: Run, batches: list[pa.RecordBatch]) -> bool:
        if run.on_batch is not None:
            for b in batches:
                run.on_batch(self.stage.stats.name, b.num_rows)
        for b in batches:
            if not run.put(self.outbox, SeqBatch(self.out_seq, b)):
                return False
            self.out_seq += 1
        return True


class SerialRun(Run):
    """A run with one worker: plain unbounded queues (a single worker must never block on itself)."""

    def __init__(self, ex: Executor) -> None:
        super().__init__(ex, [deque() for _ in range(len(ex.stages) + 1)])

    def stage_runs(self, ex: Executor) -> list[StageRun]:
        return [StageRun(stage, self.queues[i], self.queues[i + 1], 1) for i, stage in enumerate(ex.stages)]

    def put(self, q: Any, item: object) -> bool:
        q.append(item)
        return True


def run_serial(ex: Executor, source: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The reference driver: one worker, the caller's thread, steps the earliest stage with input.

    It reads the next source batch only when every stage is idle, so each batch goes through
    every stage before the next is read, and an error is raised here as it happens.
    """
    run = SerialRun(ex)
    stages, outbox = run.stage_runs(ex), run.queues[-1]
    batches = enumerate(source)
    while True:
        for busy in stages:
            if busy.inbox:
                item = busy.inbox.popleft()
                if item is END:
                    busy.retire(run)
                else:
                    busy.process(run, item)
                break
        else:  # every stage is idle: read the next batch (the end marker, once, ends the loop below)
            seq, batch = next(batches, (-1, END))
            run.put(run.queues[0], END if batch is END else SeqBatch(seq, batch))
        while outbox:
            item = outbox.popleft()
            if item is END:
                return
            yield item.batch


def _feed(run: Run, source: Iterable[pa.RecordBatch]) -> None:
    try:
        for seq, batch in enumerate(source):
            if not run.put(run.queues[0], SeqBatch(seq, batch)):
                return
        run.put(run.queues[0], END)
    except BaseException as exc:  # a failing source ends the run with its error
        run.fail(exc)


def _work(run: Run, stage: StageRun) -> None:
    try:
        while not run.stop.is_set() and (item := stage.take(run)) is not None and stage.process(run, item):
            pass
    except BaseException as exc:
        run.fail(exc)
    finally:
        try:
            stage.retire(run)
        except BaseException as exc:
            run.fail(exc)


def run_threads(ex: Executor, source: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The streaming driver: the source and every worker of every stage on their own threads."""
    run = Run(ex, [queue.Queue(maxsize=ex.queue_capacity) for _ in range(len(ex.stages) + 1)])
    threads = [threading.Thread(target=_feed, args=(run, source), name="aaflow-source", daemon=True)]
    threads += [threading.Thread(target=_work, args=(run, s), name=f"aaflow-{s.stage.stats.name}-{w}", daemon=True)
                for s in run.stage_runs(ex) for w in range(s.workers)]
    for t in threads:
        t.start()
    try:
        while True:
            item = run.get(run.queues[-1])
            if item is END:
                break
            assert isinstance(item, SeqBatch)
            yield item.batch
    finally:
        run.stop.set()
        for t in threads:
            t.join()
    if run.error is not None:
        err = run.error
        if not isinstance(err, AAFlowError):
            err = OperatorError("executor", None, err)
        if hasattr(err, "add_note"):  # Python >= 3.11: keep the worker's traceback
            err.add_note(run.error_tb)
        raise err


# The executor's `backend=` choices (not the embedding engines, models.ENGINES).
EXECUTOR_BACKENDS: dict[str, Callable[[Executor, Iterable[pa.RecordBatch]], Iterator[pa.RecordBatch]]] = {
    "serial": run_serial,
    "threads": run_threads,
}
