"""Across hosts: two simulated hosts (network namespaces joined by a veth pair, see `hosts.py`).

Native `aaflow ingest` / `aaflow query`, `AAFlowRunnable.batch` and `AAFlowIngestionPipeline.run`
with one rank on each host equal one rank; the manifest records the hosts; a path that is not
shared, and a rank lost on host b, end the job naming the path or the host.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from aaflow_adapters.langchain import AAFlowRunnable
from aaflow_core.distributed import Comm
from aaflow_core.distributed.comm import rank_timeout
from aaflow_core.distributed.hosts import threads_for
from aaflow_core.errors import ConfigError
from aaflow_core.pipelines import IngestConfig, ingest, query
from aaflow_core.plan.placement import available_cpus, intra_op_threads
from aaflow_core.stores.faiss_store import IndexReader

from tests.mpi.hosts import Hosts, cannot_simulate, simulated_hosts
from tests.mpi.mpirun import PROGS

pytestmark = pytest.mark.mpi
QUESTION = "How do I split a shell command line into tokens?"
INPUTS = [{"q": f"question {i}"} for i in range(7)]
TOL = 1e-5


@pytest.fixture(scope="module")
def hosts(tmp_path_factory) -> Hosts:
    """Hosts a and b; WORK/local is a different (empty, tmpfs) directory on host b."""
    why = cannot_simulate()
    if why:
        pytest.skip(why)
    work = tmp_path_factory.mktemp("hosts")
    (work / "local").mkdir()
    with simulated_hosts(work, local_dirs={1: [work / "local"]}) as made:
        yield made


@pytest.fixture(scope="module")
def job(hosts, small_corpus, tmp_path_factory) -> dict:
    """One job over both hosts (progs/multihost.py), and the one-rank native references in this process.

    LOCAL/corpus and LOCAL/index (the one-rank index) exist on host a only: the job's last part.
    """
    work, local = tmp_path_factory.mktemp("mh"), hosts.local_dirs[1][0]
    one = ingest(IngestConfig(paths=(str(small_corpus),), index_dir=str(work / "one"), threads=1, progress=False),
                 comm=Comm())
    shutil.copytree(small_corpus, local / "corpus")
    shutil.copytree(work / "one", local / "index")
    before = hosts.veth_bytes(1)
    done = hosts.run([str(PROGS / "multihost.py"), str(small_corpus), str(work), str(local)], timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    after = hosts.veth_bytes(1)
    return {"work": work, "done": done, "one": one, "veth": {k: after[k] - before[k] for k in after},
            "reports": [json.loads((work / f"mh-{r}.json").read_text()) for r in (0, 1)]}


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def test_each_rank_runs_on_its_own_host(job):
    r0, r1 = job["reports"]
    assert (r0["size"], r0["host"], r1["host"]) == (2, "host-a", "host-b")
    assert f"rank 0 pid {r0['pid']} on host-a, rank 1 pid {r1['pid']} on host-b" in job["done"].stderr


def test_mpi_traffic_between_the_hosts_crosses_the_veth_pair(job):
    """Each rank sent the other 4 MiB last: it went through host b's veth end, not shared memory."""
    assert [r["probe_ok"] for r in job["reports"]] == [True, True]
    assert job["veth"]["tx"] > 4 << 20 and job["veth"]["rx"] > 4 << 20


def test_native_ingest_across_hosts_equals_one_rank(job):
    work, one = job["work"], job["one"]
    two = manifest(work / "two")
    assert len(two["shards"]) == 2 and all(r["chunks"] for r in two["per_rank"])
    assert two["counts"] == one.manifest["counts"] and two["chunks_sha256"] == one.manifest["chunks_sha256"]
    r1, r2 = IndexReader(work / "one"), IndexReader(work / "two")
    assert r2.rows.column("chunk_id").to_pylist() == r1.rows.column("chunk_id").to_pylist()
    assert r2.rows.column("text").to_pylist() == r1.rows.column("text").to_pylist()
    np.testing.assert_allclose(r2.vectors(), r1.vectors(), rtol=0, atol=TOL)


def test_native_query_across_hosts_equals_one_rank(job):
    r0, r1 = job["reports"]
    assert r0["rcs"] == r1["rcs"] == [0, 0] and r1["query_stdout"] == ""
    two = json.loads(r0["query_stdout"])["hits"]
    single = query(job["work"] / "one", [QUESTION], k=5, comm=Comm())[0]
    assert [h["chunk_id"] for h in two] == [h.chunk_id for h in single] and len(two) == 5
    np.testing.assert_allclose([h["score"] for h in two], [h.score for h in single], atol=TOL)
    assert two[0]["source"].endswith("shlex.txt")


def test_the_manifest_records_hosts_and_each_rank_loads_the_model_once(job):
    two = manifest(job["work"] / "two")
    assert two["hosts"] == [{"host": "host-a", "ranks": [0]}, {"host": "host-b", "ranks": [1]}]
    assert [(r["rank"], r["host"], r["models_loaded"]) for r in two["per_rank"]] == [(0, "host-a", 1), (1, "host-b", 1)]
    assert all(r["model_load_s"] > 0 for r in two["per_rank"])
    assert [r["models_loaded"] for r in job["reports"]] == [1, 1]  # after ingest and query: still one each
    out = job["done"].stdout
    assert "host host-a: 1 rank(s); rank 0 loaded 1 model(s) in" in out
    assert "host host-b: 1 rank(s); rank 1 loaded 1 model(s) in" in out


def test_runnable_batch_across_hosts_equals_one_rank(job):
    chain = ChatPromptTemplate.from_template("Q: {q}") | ParrotFakeChatModel() | RunnableLambda(
        lambda m: {"text": m.content.upper(), "words": len(m.content.split())})
    stock = chain.batch(INPUTS)
    assert AAFlowRunnable(chain, ranks=1).batch(INPUTS) == stock
    assert [r["answers"] for r in job["reports"]] == [stock, stock]


def test_ingestion_pipeline_across_hosts_equals_one_rank(job):
    work, (r0, r1) = job["work"], job["reports"]
    assert len(r0["nodes_two"]) > 10 and r0["nodes_two"] == r1["nodes_two"] == r0["nodes_one"]
    two = [np.load(work / f"mh-{rank}-two.npy") for rank in (0, 1)]
    assert np.array_equal(two[0], two[1])
    assert np.abs(two[0] - np.load(work / "mh-0-one.npy")).max() <= TOL
    assert [r0["faiss_rows"], r1["faiss_rows"]] == [len(r0["nodes_two"]), 0]  # rank 0 alone writes the store
    assert r0["top_two"] == r0["top_one"] and len(r0["top_two"]) == 5


def test_nothing_crosses_hosts_pickled(job):
    assert [r["pickles"] for r in job["reports"]] == [{"dumps": 0, "loads": 0}] * 2


@pytest.fixture(scope="module")
def not_shared(hosts, job) -> tuple[Path, list[dict]]:
    return hosts.local_dirs[1][0], [r["not_shared"] for r in job["reports"]]


def test_an_index_directory_not_shared_is_an_error_naming_it_and_the_host(not_shared):
    local, (r0, r1) = not_shared
    assert r0["index"]["rc"] == r1["index"]["rc"] == 1
    assert (f"aaflow: error: the index's staging directory {local}/.new.staging-" in r0["index"]["stderr"])
    assert "is not shared: rank 0 made it on host-a, but it is not there on host-b (rank 1)" in r0["index"]["stderr"]
    assert not list(local.glob(".new*")) and not (local / "new").exists()  # rank 0 removed its staging


def test_a_corpus_not_shared_is_an_error_naming_the_file_and_the_host(not_shared, job):
    local, (r0, r1) = not_shared
    assert r0["corpus"]["rc"] == r1["corpus"]["rc"] == 1
    err = r0["corpus"]["stderr"]
    assert re.search(rf"aaflow: error: rank 1 on host-b failed: SharedPathError: input {local}/corpus/\w+\.txt "
                     r"\(not found\).* is not visible to rank 1 on host-b, though rank 0 found it", err), err
    assert not (job["work"] / "from-local").exists()


def test_an_index_not_shared_is_an_error_when_queried(not_shared):
    local, (r0, r1) = not_shared
    assert r0["query"]["rc"] == r1["query"]["rc"] == 1
    assert (f"aaflow: error: the index manifest {local}/index/manifest.json is missing on host-b (rank 1) "
            "(rank 0 reads it on host-a)") in r0["query"]["stderr"]


def test_a_rank_lost_on_host_b_ends_the_whole_job_naming_the_host(hosts, job, small_corpus, tmp_path):
    good = tmp_path / "index"
    shutil.copytree(job["work"] / "two", good)
    before = (good / "manifest.json").read_bytes()
    done = hosts.run([str(PROGS / "kill_rank.py"), str(small_corpus), str(good)], timeout=120)
    assert done.returncode != 0
    ranks = {r: (pid, host) for r, pid, host in re.findall(r"rank (\d) pid (\d+) on ([\w-]+)", done.stderr)}
    lost = re.search(r"PID (\d+) RUNNING AT ([\d.]+)", done.stdout + done.stderr)
    assert lost and ranks["1"] == (lost.group(1), "host-b") and lost.group(2) == hosts.addresses[1], done.stderr
    assert (good / "manifest.json").read_bytes() == before


def test_placement_and_failures_name_hosts_with_two_ranks_on_one_host(hosts, tmp_path):
    done = hosts.run([str(PROGS / "hosts_layout.py"), str(tmp_path)], per_host=[2, 1], timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads((tmp_path / f"layout-{r}.json").read_text()) for r in range(3)]
    for report in reports:
        assert report["hosts"] == [{"host": "host-a", "ranks": [0, 1]}, {"host": "host-b", "ranks": [2]}]
        assert report["failure"] == {"rank": 2, "host": "host-b",
                                     "message": "rank 2 on host-b failed: ValueError: injected on rank 2"}
    assert [r["local_size"] for r in reports] == [2, 2, 1]  # what splits the cores into threads per rank
    cpus = available_cpus()  # the simulated hosts share this machine's CPUs
    assert [r["threads"] for r in reports] == [intra_op_threads(cpus, 2, 0), intra_op_threads(cpus, 2, 1),
                                               intra_op_threads(cpus, 1)]


@pytest.mark.parametrize(("masks", "want"), [
    ([[0, 1, 2, 3]], [4]),
    ([[0, 1, 2, 3], [0, 1, 2, 3]], [2, 2]),  # ranks share the node's CPUs: split them
    ([[0, 1], [2, 3]], [2, 2]),  # bound to their own cores (srun --cpu-bind, -bind-to core:2): use them
    ([[0, 1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13, 14, 15]], [8, 8]),
    ([[0, 1, 2], [0, 1, 2], [0, 1, 2]], [1, 1, 1]),
])
def test_threads_per_rank_split_shared_cpus_and_keep_bound_ones(masks, want):
    assert [threads_for(masks, r) for r in range(len(masks))] == want


def test_a_host_that_drops_off_the_network_ends_the_job_naming_it(hosts, tmp_path):
    """No process dies, no connection closes: only AAFLOW_RANK_TIMEOUT's check notices (hydra waits)."""
    def unplug_host_b() -> None:
        while not (tmp_path / "ready").exists():
            time.sleep(0.05)
        subprocess.run(["ip", "-n", hosts.names[1], "link", "set", "veth0", "down"], check=True)

    unplug = threading.Thread(target=unplug_host_b, daemon=True)
    unplug.start()
    started = time.monotonic()
    try:
        done = hosts.run([str(PROGS / "lost_host.py"), str(tmp_path)], timeout=90, env={"AAFLOW_RANK_TIMEOUT": "5"})
    finally:
        unplug.join(timeout=5)
        subprocess.run(["ip", "-n", hosts.names[1], "link", "set", "veth0", "up"], check=True)
        hosts.wait_until_up()
    assert done.returncode != 0 and "the check passed" not in done.stdout
    assert ("aaflow: rank 0: rank 1 on host-b did not reach the collective check within 5s (AAFLOW_RANK_TIMEOUT): "
            "lost; aborting the MPI job") in done.stderr, (done.returncode, time.monotonic() - started, done.stderr[-2000:])


@pytest.mark.parametrize(("text", "want"), [("", None), ("2.5", 2.5), ("600", 600.0), ("0", "error"), ("x", "error")])
def test_rank_timeout_is_read_from_the_environment(monkeypatch, text, want):
    monkeypatch.setenv("AAFLOW_RANK_TIMEOUT", text)
    if want == "error":
        with pytest.raises(ConfigError, match="AAFLOW_RANK_TIMEOUT"):
            rank_timeout()
    else:
        assert rank_timeout() == want


@pytest.mark.skipif(os.geteuid() != 0, reason="the root check comes first when not root")
def test_without_ip_the_test_skips_naming_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH: no `ip`
    assert cannot_simulate() == ("simulated hosts need `ip` (iproute2); `make test` installs it when run as root")
