"""The adapters inside an MPI program: `AAFlowRunnable(...).batch` and `AAFlowIngestionPipeline(...).run`
under `mpiexec -n 2` equal stock on every rank, move no pickles, and a failing rank is named."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from aaflow_adapters.langchain import AAFlowRunnable
from aaflow_adapters.langchain.mpi import to_json
from aaflow_adapters.llamaindex import AAFlowIngestionPipeline
from aaflow_core.errors import ConfigError, InputError

from tests.mpi.mpirun import PROGS, run_mpi

TOL = 1e-5


def reports(work: Path, name: str) -> list[dict]:
    return [json.loads((work / f"{name}-{rank}.json").read_text()) for rank in (0, 1)]


@pytest.fixture(scope="module")
def lc(tmp_path_factory) -> list[dict]:
    work = tmp_path_factory.mktemp("lc")
    done = run_mpi([str(PROGS / "adapter_langchain.py"), str(work)], timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return reports(work, "lc")


@pytest.fixture(scope="module")
def li(tmp_path_factory) -> tuple[Path, list[dict]]:
    """One mpiexec job (the model loads once per rank): every LlamaIndex case, then references on rank 0."""
    work = tmp_path_factory.mktemp("li")
    done = run_mpi([str(PROGS / "adapter_llamaindex.py"), str(work)], timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return work, reports(work, "li")


def vectors(work: Path, rank: int, run: str) -> np.ndarray:
    return np.load(work / f"li-{rank}-{run}.npy")


# -- LangChain -------------------------------------------------------------------------------
@pytest.mark.mpi
def test_runnable_batch_on_two_ranks_equals_stock_on_every_rank(lc):
    for report in lc:
        assert report["size"] == 2
        for case in ("answers_equal_stock", "messages_equal_stock", "abatch_equal_stock", "as_completed_equal_stock",
                     "one_input", "ranks_1_equal_stock"):
            assert report[case] is True, case
    assert lc[0]["answers"] == lc[1]["answers"]
    assert [a["text"] for a in lc[0]["answers"]] == [f"Q: QUESTION {i}" for i in range(7)]


@pytest.mark.mpi
def test_callbacks_fire_on_the_rank_that_ran_the_input(lc):
    assert [r["callback_roots"] for r in lc] == [[0, 1, 2, 3], [4, 5, 6]]


@pytest.mark.mpi
def test_return_exceptions_come_back_on_every_rank_without_pickle(lc):
    for rank, other, (mine, theirs) in ((0, 1, (3, 5)), (1, 0, (5, 3))):
        excs = lc[rank]["exceptions"]
        assert excs[mine] == {"type": "ValueError", "str": f"bad input {mine}", "rank": None, "type_name": None}
        assert excs[theirs] == {"type": "RemoteRankError", "rank": other, "type_name": "ValueError",
                                "str": f"input {theirs} failed on rank {other}: ValueError: bad input {theirs}"}
        assert all(e is None for i, e in enumerate(excs) if i not in (3, 5))
        assert lc[rank]["remote_is_rank_error"] == [True]


@pytest.mark.mpi
def test_a_failing_rank_ends_the_batch_on_every_rank_naming_it(lc):
    for report in lc:
        assert report["fail_fast"] == {"type": "RankError", "rank": 1, "message": "rank 1 failed: ValueError: bad input 5"}
        assert report["unserializable"]["rank"] == 1
        assert report["unserializable"]["message"].startswith("rank 1 failed: InputError: input 4: its output (tuple)")


@pytest.mark.mpi
def test_nothing_crosses_ranks_pickled(lc, li):
    assert [r["pickles"] for r in lc + li[1]] == [{"dumps": 0, "loads": 0}] * 4


@pytest.mark.mpi
def test_a_killed_rank_ends_the_whole_job(tmp_path):
    done = run_mpi([str(PROGS / "adapter_langchain.py"), str(tmp_path), "kill"], timeout=300)
    assert done.returncode != 0
    pids = dict(re.findall(r"rank (\d) pid (\d+)", done.stdout))
    killed = re.search(r"PID (\d+) RUNNING AT", done.stdout + done.stderr)
    assert killed and pids.get("1") == killed.group(1), done.stdout + done.stderr
    assert "finished the batch" not in done.stdout


def test_outputs_that_json_cannot_carry_exactly_are_refused_naming_the_input():
    message = AIMessage(content="hi", id="m1", response_metadata={"model": "x"})
    assert json.loads(to_json(message, 0))["id"][-1] == "AIMessage"
    assert to_json({"a": [1, 2.5, None]}, 1) == '{"a": [1, 2.5, null]}'
    for bad in ((1, 2), {1: "a"}, object()):
        with pytest.raises(InputError, match=rf"^input 7: its output \({type(bad).__name__}\)"):
            to_json(bad, 7)


def test_a_node_whose_metadata_json_cannot_carry_is_refused_naming_it():
    from llama_index.core.schema import TextNode

    from aaflow_adapters.llamaindex.mpi import node_json

    data = json.loads(node_json(TextNode(text="t", id_="n1", embedding=[0.5])))["__data__"]
    assert data["id_"] == "n1" and "embedding" not in data  # the vector travels as Arrow, not JSON
    with pytest.raises(InputError, match="^node n2: cannot cross MPI ranks as JSON"):
        node_json(TextNode(text="t", id_="n2", metadata={"when": object()}))


def test_ranks_option_is_checked_at_the_edge():
    with pytest.raises(ConfigError, match="ranks"):
        AAFlowRunnable(RunnableLambda(str), ranks=0)
    with pytest.raises(ConfigError, match="mpiexec -n 2"):  # no launcher: a 1-rank job
        AAFlowRunnable(RunnableLambda(str), ranks=2)
    assert AAFlowRunnable(RunnableLambda(str), ranks="auto").batch([1, 2]) == ["1", "2"]
    with pytest.raises(ConfigError, match="ranks"):
        AAFlowIngestionPipeline(transformations=[], ranks="all")
    with pytest.raises(ConfigError, match="mpiexec -n 2"):
        AAFlowIngestionPipeline(transformations=[], ranks=2)


# -- LlamaIndex ------------------------------------------------------------------------------
@pytest.mark.mpi
def test_ingestion_on_two_ranks_gives_every_rank_the_stock_nodes(li):
    work, (r0, r1) = li
    assert r0["size"] == 2 and len(r0["nodes_a"]) > 10
    assert r0["nodes_a"] == r1["nodes_a"] == r0["nodes_stock"] == r0["nodes_one"]  # ids, text, metadata, relations
    assert np.array_equal(vectors(work, 0, "a"), vectors(work, 1, "a"))  # bits from the rank that embedded them
    assert np.abs(vectors(work, 0, "a") - vectors(work, 0, "stock")).max() <= TOL
    assert np.abs(vectors(work, 0, "a") - vectors(work, 0, "one")).max() <= TOL


@pytest.mark.mpi
def test_ingestion_rerun_on_two_ranks_is_bit_identical(li):
    work, _ = li
    for rank in (0, 1):
        assert np.array_equal(vectors(work, rank, "a"), vectors(work, rank, "c"))


@pytest.mark.mpi
def test_rank_zero_alone_writes_the_stores_and_decides_duplicates(li):
    _, (r0, r1) = li
    assert [r0["faiss_rows"], r1["faiss_rows"]] == [len(r0["nodes_a"]), 0]
    assert [r0["docstore_docs"], r1["docstore_docs"]] == [6, 0]
    assert [r0["len_b"], r1["len_b"]] == [0, 0]  # the second run: every document already in rank 0's docstore
    assert r0["top_a"] == r0["top_stock"] and len(r0["top_a"]) == 5


@pytest.mark.mpi
def test_a_failing_rank_ends_the_ingestion_on_every_rank_naming_it(li):
    for report in li[1]:
        assert report["failure"]["rank"] == 1
        # FailOn is a user component: called once on the rank's whole shard, its own error comes back
        assert report["failure"]["message"].startswith("rank 1 failed: ValueError: bad document doc-5")
