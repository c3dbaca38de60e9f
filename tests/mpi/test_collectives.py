"""The rank context on its own: shards, Arrow IPC collectives (no pickle), top-k merge."""
from __future__ import annotations

import json
import subprocess
import sys

import faiss
import numpy as np
import pyarrow as pa
import pytest

from aaflow_core.distributed import Comm, exact_topk, hits_of, merge_topk

from tests.mpi.mpirun import PROGS, mpi_env, run_mpi


def unit_vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    x[[7, 19, 33]] = x[2]  # exact ties spread over the shards below
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_size_one_without_launcher_does_not_import_mpi4py():
    code = ("import sys; from aaflow_core.distributed import Comm; c = Comm.world(); "
            "print(c.rank, c.size, list(c.shard(5)), 'mpi4py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=mpi_env(), check=True)
    assert out.stdout.split() == ["0", "1", "[0,", "1,", "2,", "3,", "4]", "False"]


@pytest.mark.parametrize("shards", [1, 3, 5])
def test_merge_of_shard_results_equals_one_index(shards):
    """Ties go to the lower row, whatever FAISS returns first; shards cannot change the answer."""
    x = unit_vectors(40)
    queries = np.ascontiguousarray(x[[2, 5, 11]])
    single = faiss.IndexFlatIP(x.shape[1])
    single.add(x)
    want_scores, want_ids = exact_topk(single, queries, 5)
    reference = np.lexsort((np.arange(40)[None, :].repeat(3, 0), -(queries @ x.T)), axis=-1)[:, :5]
    assert (want_ids == reference).all()
    assert list(want_ids[0][:4]) == [2, 7, 19, 33]
    parts = []
    for part in np.array_split(np.arange(40), shards):
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x[part])
        parts.append(hits_of(*exact_topk(index, queries, 5, offset=int(part[0]))))
    merged = merge_topk(pa.concat_tables(parts), 5)
    assert merged.column("row").to_pylist() == want_ids.ravel().tolist()
    assert np.array_equal(merged.column("score").to_numpy(), want_scores.ravel())
    assert merged.column("rank").to_pylist() == [0, 1, 2, 3, 4] * 3


@pytest.mark.mpi
def test_collectives_under_mpiexec_move_arrow_bytes_never_pickles(tmp_path):
    report_path = tmp_path / "report.json"
    done = run_mpi([str(PROGS / "collectives.py"), str(report_path)], timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["size"] == 2
    for n, parts in report["shards"].items():
        assert [i for part in parts for i in part] == list(range(int(n)))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert report["weighted"] == {"[5, 45, 15]": [[0, 1], [2]], str([1] * 7): [[0, 1, 2, 3], [4, 5, 6]],
                                  "[100, 1, 1, 1]": [[0], [1, 2, 3]], "[1, 1, 1, 100]": [[0, 1, 2], [3]]}
    assert report["allgather_ranks"] == [0, 0, 0, 1, 1, 1, 1] and report["allgather_equal"]
    assert report["gather_on_others_is_none"] == [False, True]
    assert report["bcast_equal"] == [True, True]
    assert report["topk"]["merged_rows"] == report["topk"]["single_rows"] and report["topk"]["scores_equal"]
    assert report["topk"]["merged_rows"][:3] == [1, 20, 40]  # a three-way tie across both ranks
    assert report["agree"] == "1: rank 1 failed: ValueError: injected on rank 1"
    assert report["pickles_in_aaflow"] == {"dumps": 0, "loads": 0}
    assert report["pickles_after_control"]["dumps"] >= 1  # the counter does see pickles


def test_agree_in_a_size_one_job_reraises_the_error_itself():
    with pytest.raises(KeyError, match="item"):
        Comm().agree(KeyError("item"))
    Comm().agree(None)


@pytest.mark.mpi
def test_an_uncaught_exception_on_one_rank_aborts_the_whole_job():
    done = run_mpi([str(PROGS / "uncaught.py")], timeout=60)
    assert done.returncode != 0
    assert "aaflow: rank 1 failed (RuntimeError); aborting the MPI job" in done.stderr
    assert "escaped every handler" in done.stderr
    assert "did not end" not in done.stdout
