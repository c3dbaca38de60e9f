"""The SPMD driver: agree-on-error blocks and sharded steps, in a size-1 job and on real ranks."""
from __future__ import annotations

import json

import pytest

from aaflow_core.distributed import Comm, Engine

from tests.mpi.mpirun import PROGS, run_mpi


def test_a_size_one_collective_reraises_the_error_itself():
    with pytest.raises(KeyError, match="item"):
        with Comm().collective():
            raise KeyError("item")
    with Comm().collective():
        pass


def test_run_sharded_in_a_size_one_job_runs_everything_and_skips_empty_work():
    calls: list[range] = []

    def work(part: range) -> list[int]:
        calls.append(part)
        return list(part)

    comm: Engine = Comm()
    assert comm.run_sharded(3, work, []) == (range(0, 3), [0, 1, 2])
    assert comm.run_sharded(0, work, ["default"]) == (range(0, 0), ["default"])
    assert comm.run_sharded(2, work, [], weights=[5, 1]) == (range(0, 2), [0, 1])
    assert calls == [range(0, 3), range(0, 2)]


@pytest.mark.mpi
def test_one_failing_rank_ends_a_sharded_step_on_every_rank(tmp_path):
    report_path = tmp_path / "report.json"
    done = run_mpi([str(PROGS / "spmd_driver.py"), str(report_path)], timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["shards"] == [[0, 10, 20], [30, 40]]
    assert report["per_rank_failure"] == [
        "1: rank 1 failed: ZeroDivisionError: division by zero (cause here: NoneType)",
        "1: rank 1 failed: ZeroDivisionError: division by zero (cause here: ZeroDivisionError)",
    ]
    assert report["root_failure"] == "0: rank 0 failed: KeyError: 'root only'"
    assert report["after"] == "reached"
