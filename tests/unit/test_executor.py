"""Backend conformance: the threads backend must equal the serial reference, bounded and ordered."""
from __future__ import annotations

import random
import threading
import time

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from aaflow_core import Executor, Resources, Workflow, bind
from aaflow_core.errors import OperatorError
from aaflow_core.runtime import EXECUTOR_BACKENDS
from aaflow_core.runtime.rebatch import Rebatch


def source(n_batches: int, rows: int = 5):
    for b in range(n_batches):
        start = b * rows
        yield pa.RecordBatch.from_pydict({"x": list(range(start, start + rows)), "source": [f"item{start + i}" for i in range(rows)]})


def jittery_double(batch: pa.RecordBatch) -> pa.RecordBatch:
    time.sleep(random.random() / 500)  # timing noise must never change the output
    return batch.set_column(0, "x", pc.multiply(batch.column("x"), 2))


def drop_odd(batch: pa.RecordBatch) -> pa.RecordBatch:
    return batch.filter(pc.equal(pc.bit_wise_and(batch.column("x"), 2), 0))


def workflow(workers: int, rebatch: int | None = None) -> Workflow:
    wf = Workflow(Resources(threads=4, queue_capacity=2))
    wf.map(jittery_double, name="double", workers=workers)
    wf.map(drop_odd, name="filter")
    if rebatch:
        wf.map(lambda batch: batch, name="regroup", batch_size=rebatch)
    return wf


def run(wf: Workflow, backend: str, n_batches: int = 40) -> list[pa.RecordBatch]:
    with Executor(bind(wf.compile(), wf.functions), backend=backend, queue_capacity=2) as ex:
        return list(ex.run(source(n_batches)))


@pytest.mark.parametrize("backend", sorted(EXECUTOR_BACKENDS))
@pytest.mark.parametrize("workers, rebatch", [(1, None), (3, None), (4, 7)])
def test_every_backend_equals_the_serial_reference(backend, workers, rebatch):
    expected = pa.Table.from_batches(run(workflow(1, rebatch), "serial"))
    got = run(workflow(workers, rebatch), backend)
    assert pa.Table.from_batches(got).equals(expected)
    if rebatch:
        assert [b.num_rows for b in got[:-1]] == [rebatch] * (len(got) - 1)


def test_rebatch_cuts_exact_sizes_and_keeps_the_tail():
    r = Rebatch("r", 4)
    out = r.push(pa.RecordBatch.from_pydict({"x": [1, 2, 3]})) + r.push(pa.RecordBatch.from_pydict({"x": [4, 5, 6, 7, 8, 9]}))
    assert [b.column("x").to_pylist() for b in out + r.drain()] == [[1, 2, 3, 4], [5, 6, 7, 8], [9]]


def test_bounded_queues_hold_back_a_fast_source():
    produced = 0
    lock = threading.Lock()

    def counted():
        nonlocal produced
        for batch in source(500):
            with lock:
                produced += 1
            yield batch

    wf = workflow(workers=2)
    stages = bind(wf.compile(), wf.functions)
    bound = (len(stages) + 1) * 2 + 2 * len(stages) + 2  # queues + batches in workers' hands + slack
    seen = 0
    with Executor(stages, backend="threads", queue_capacity=2) as ex:
        for _ in ex.run(counted()):
            seen += 1
            if seen % 50 == 0:
                time.sleep(0.02)  # let the source run ahead as far as it can
                with lock:
                    assert produced - seen <= bound
    assert produced == 500


@pytest.mark.parametrize("backend", sorted(EXECUTOR_BACKENDS))
def test_operator_failure_names_operator_and_item(backend):
    def explode(batch: pa.RecordBatch) -> pa.RecordBatch:
        if 57 in batch.column("x").to_pylist():
            raise ValueError("bad value")
        return batch

    wf = Workflow(Resources(threads=2)).map(explode, name="explode", workers=2)
    with pytest.raises(OperatorError) as info:
        with Executor(bind(wf.compile(), wf.functions), backend=backend) as ex:
            list(ex.run(source(40)))
    assert info.value.operator == "explode"
    assert info.value.item == "item55"  # the first item of the failing batch
    assert "bad value" in str(info.value)


def test_wrong_return_type_from_a_user_function_is_named():
    wf = Workflow().map(lambda batch: [1, 2], name="listy")
    with pytest.raises(OperatorError, match="listy.*expected pyarrow.RecordBatch"):
        with Executor(bind(wf.compile(), wf.functions), backend="threads") as ex:
            list(ex.run(source(2)))


def test_serial_is_one_worker_the_callers_thread_reading_the_source_only_when_idle():
    events: list[str] = []
    threads: set[int] = set()

    def read():
        for b, batch in enumerate(source(3)):
            events.append(f"read {b}")
            yield batch

    def step(name: str):
        def run(batch: pa.RecordBatch) -> pa.RecordBatch:
            threads.add(threading.get_ident())
            events.append(f"{name} {batch.column('x')[0].as_py()}")
            return batch
        return run

    wf = Workflow(Resources(threads=4)).map(step("a"), name="a", workers=3).map(step("b"), name="b")
    with Executor(bind(wf.compile(), wf.functions), backend="serial") as ex:
        out = list(ex.run(read()))
    assert pa.Table.from_batches(out).equals(pa.Table.from_batches(list(source(3))))
    assert threads == {threading.get_ident()}
    assert events == ["read 0", "a 0", "b 0", "read 1", "a 5", "b 5", "read 2", "a 10", "b 10"]
