"""One scheduling loop, two backends: `serial` (the reference) and `threads` (streaming).

The threads backend gives every stage its own thread(s) and a bounded input queue: stages
overlap, a full queue blocks its producer (backpressure), and memory stays bounded by
`queue_capacity` batches per stage. Every batch carries a sequence key from input order;
a stage with several workers restores that order in a reorder buffer before emitting, so
timing decides what runs next, never what comes out. Both backends must give identical
output; the conformance tests hold them to it.
"""
from __future__ import annotations

import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

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
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {sorted(BACKENDS)}")
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
        yield from BACKENDS[self.backend](self, source)
        for op in self.operators.values():
            op.finish()

    def _emit(self, stage: Stage, batches: list[pa.RecordBatch]) -> None:
        if self.on_batch is not None:
            for b in batches:
                self.on_batch(stage.stats.name, b.num_rows)


def run_serial(ex: Executor, source: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The reference backend: every batch goes through every stage in the caller's thread."""

    def through(start: int, batches: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
        for stage in ex.stages[start:]:
            batches = [out for b in batches for out in stage.push(b)]
            ex._emit(stage, batches)
        return batches

    for batch in source:
        yield from through(0, [batch])
    for i, stage in enumerate(ex.stages):
        tail = stage.drain()
        ex._emit(stage, tail)
        yield from through(i + 1, tail)


class _Pipeline:
    """The state of one threaded run: queues between stages, the first error, a stop flag."""

    def __init__(self, ex: Executor) -> None:
        self.ex = ex
        self.queues = [queue.Queue(maxsize=ex.queue_capacity) for _ in range(len(ex.stages) + 1)]
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.error_tb = ""
        self._lock = threading.Lock()

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error, self.error_tb = exc, traceback.format_exc()
        self.stop.set()

    def put(self, q: queue.Queue, item: object) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def get(self, q: queue.Queue) -> object:
        while not self.stop.is_set():
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                continue
        return END

    def feed(self, source: Iterable[pa.RecordBatch]) -> None:
        try:
            for seq, batch in enumerate(source):
                if not self.put(self.queues[0], SeqBatch(seq, batch)):
                    return
            self.put(self.queues[0], END)
        except BaseException as exc:  # a failing source ends the run with its error
            self.fail(exc)

    def run_stage(self, i: int) -> None:
        """Workers pull in order; a reorder buffer releases outputs by input sequence key."""
        stage, inbox, outbox = self.ex.stages[i], self.queues[i], self.queues[i + 1]
        take_lock, emit_lock = threading.Lock(), threading.Condition()
        # Items taken but not yet emitted: bounds the reorder buffer when one worker lags.
        window = threading.Semaphore(2 * stage.workers)
        state = {"next": 0, "out_seq": 0, "done": 0, "ended": False}
        ready: dict[int, list[pa.RecordBatch]] = {}

        def emit(batches: list[pa.RecordBatch]) -> bool:
            self.ex._emit(stage, batches)
            for b in batches:
                if not self.put(outbox, SeqBatch(state["out_seq"], b)):
                    return False
                state["out_seq"] += 1
            return True

        def worker() -> None:
            try:
                while not self.stop.is_set():
                    if not window.acquire(timeout=POLL_S):
                        continue
                    with take_lock:
                        if state["ended"]:
                            break
                        item = self.get(inbox)
                        if item is END:
                            state["ended"] = True
                            break
                    assert isinstance(item, SeqBatch)
                    out = stage.push(item.batch)
                    with emit_lock:
                        ready[item.seq] = out
                        while state["next"] in ready:
                            if not emit(ready.pop(state["next"])):
                                return
                            state["next"] += 1
                            window.release()
            except BaseException as exc:
                self.fail(exc)
            finally:
                with emit_lock:
                    state["done"] += 1
                    last = state["done"] == stage.workers
                if last and not self.stop.is_set():
                    try:
                        emit(stage.drain()) and self.put(outbox, END)
                    except BaseException as exc:
                        self.fail(exc)

        threads = [threading.Thread(target=worker, name=f"aaflow-{stage.stats.name}-{w}", daemon=True)
                   for w in range(stage.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def run_threads(ex: Executor, source: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    pipe = _Pipeline(ex)
    threads = [threading.Thread(target=pipe.feed, args=(source,), name="aaflow-source", daemon=True)]
    threads += [threading.Thread(target=pipe.run_stage, args=(i,), name=f"aaflow-stage-{i}", daemon=True)
                for i in range(len(ex.stages))]
    for t in threads:
        t.start()
    try:
        while True:
            item = pipe.get(pipe.queues[-1])
            if item is END:
                break
            assert isinstance(item, SeqBatch)
            yield item.batch
    finally:
        pipe.stop.set()
        for t in threads:
            t.join()
    if pipe.error is not None:
        err = pipe.error
        if not isinstance(err, AAFlowError):
            err = OperatorError("executor", None, err)
        if hasattr(err, "add_note"):  # Python >= 3.11: keep the worker's traceback
            err.add_note(pipe.error_tb)
        raise err


BACKENDS: dict[str, Callable[[Executor, Iterable[pa.RecordBatch]], Iterator[pa.RecordBatch]]] = {
    "serial": run_serial,
    "threads": run_threads,
}
