"""`aaflow ingest` / `aaflow query` under `mpiexec -n 2` equal one process; failures end the job."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from aaflow_core.cli.main import main
from aaflow_core.distributed import Comm
from aaflow_core.pipelines import IngestConfig, ingest, query
from aaflow_core.stores.faiss_store import IndexReader
from aaflow_core.stores.layout import index_shards

from tests.mpi.mpirun import PROGS, run_mpi

pytestmark = pytest.mark.mpi
QUESTION = "How do I split a shell command line into tokens?"


@pytest.fixture(scope="module")
def runs(small_corpus, embedder, tmp_path_factory):
    """One process ingest (in this process), then one mpiexec job: ingest, rerun, failing run."""
    work = tmp_path_factory.mktemp("mpi")
    one = ingest(IngestConfig(paths=(str(small_corpus),), index_dir=str(work / "one"), threads=2, progress=False),
                 comm=Comm())
    done = run_mpi([str(PROGS / "ingest_runs.py"), str(small_corpus), str(work)], timeout=240)
    return {"work": work, "one": one, "done": done}


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def test_two_ranks_write_one_shard_each_and_equal_one_rank(runs):
    work, one = runs["work"], runs["one"]
    assert runs["done"].returncode == 0, runs["done"].stderr[-3000:]
    two = manifest(work / "a")
    assert [s.rows for s in index_shards(work / "a")] == [r["chunks"] for r in two["per_rank"]]
    assert two["resources"]["ranks"] == 2 and len(two["shards"]) == 2
    assert two["counts"] == one.manifest["counts"]
    assert two["chunks_sha256"] == one.manifest["chunks_sha256"]
    r1, r2 = IndexReader(work / "one"), IndexReader(work / "a")
    assert r2.rows.column("chunk_id").to_pylist() == r1.rows.column("chunk_id").to_pylist()
    assert r2.rows.column("text").to_pylist() == r1.rows.column("text").to_pylist()
    np.testing.assert_allclose(r2.vectors(), r1.vectors(), rtol=0, atol=1e-5)
    assert two["bytes_between_ranks"] > 0


def test_rerun_on_two_ranks_is_bit_identical(runs):
    a, b = runs["work"] / "a", runs["work"] / "b"
    assert manifest(a)["output_sha256"] == manifest(b)["output_sha256"]
    assert np.array_equal(IndexReader(a).vectors(), IndexReader(b).vectors())


def test_cli_prints_from_rank_zero_only_and_a_failing_rank_ends_the_job(runs):
    work, done = runs["work"], runs["done"]
    assert json.loads((work / "rcs-0.json").read_text()) == [0, 0, 1]
    assert json.loads((work / "rcs-1.json").read_text()) == [0, 0, 1]
    assert done.stdout.count("ingested 3 documents") == 2
    errors = re.findall(r"aaflow: error: .*", done.stderr)
    assert len(errors) == 1 and errors[0].startswith("aaflow: error: rank 1 failed: OperatorError")
    assert "injected failure" in errors[0]
    # The failed --overwrite run left the good index as it was, and no staging directory.
    assert manifest(work / "a")["output_sha256"] == manifest(work / "b")["output_sha256"]
    assert not [p.name for p in work.iterdir() if ".staging-" in p.name]


def test_query_on_two_ranks_equals_one_process_on_a_one_rank_index(runs, capsys):
    work = runs["work"]
    assert main(["query", QUESTION, "--index", str(work / "one"), "-k", "4", "--json"]) == 0
    single = json.loads(capsys.readouterr().out)
    done = run_mpi(["-m", "aaflow_core.cli.main", "query", QUESTION, "--index", str(work / "a"), "-k", "4", "--json"],
                   timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(done.stdout.splitlines()) == 1
    two = json.loads(done.stdout)
    assert [h["chunk_id"] for h in two["hits"]] == [h["chunk_id"] for h in single["hits"]]
    np.testing.assert_allclose([h["score"] for h in two["hits"]], [h["score"] for h in single["hits"]], atol=1e-5)
    assert two["hits"][0]["source"].endswith("shlex.txt")
    # One process reading the sharded index gives the same hits as reading the one-rank index.
    sharded = query(work / "a", [QUESTION], k=4, comm=Comm())[0]
    assert [h.chunk_id for h in sharded] == [h["chunk_id"] for h in single["hits"]]


def test_a_killed_rank_ends_the_job_and_the_good_index_survives(runs, small_corpus, tmp_path):
    good = tmp_path / "index"
    shutil.copytree(runs["work"] / "b", good)
    before = (good / "manifest.json").read_bytes()
    done = run_mpi([str(PROGS / "kill_rank.py"), str(small_corpus), str(good)], timeout=300)
    assert done.returncode != 0
    pids = dict(re.findall(r"rank (\d) pid (\d+)", done.stderr))
    killed = re.search(r"PID (\d+) RUNNING AT", done.stdout + done.stderr)
    assert killed and pids.get("1") == killed.group(1), done.stdout + done.stderr
    assert (good / "manifest.json").read_bytes() == before
    assert IndexReader(good).rows.num_rows == manifest(good)["counts"]["chunks"]
