"""A checkpointed `AAFlowRunnable.batch` under `mpiexec -n 2`: per-rank parts; a rerun runs only what failed."""
from __future__ import annotations

import json

import pytest

from tests.mpi.mpirun import PROGS, run_mpi


@pytest.mark.mpi
def test_checkpointed_batch_on_two_ranks_keeps_parts_per_rank(tmp_path) -> None:
    done = run_mpi([str(PROGS / "checkpoint_langchain.py"), str(tmp_path)], timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"ck-{rank}.json").read_text()) for rank in (0, 1))
    expected = [{"i": i, "text": f"QUESTION {i}"} for i in range(20)]
    for report in (r0, r1):
        assert report["first_failed"] == [3, 12]
        assert report["second"] == expected
        assert report["dirs"] == ["rank-0-of-2", "rank-1-of-2"]
    assert r0["first_ran"] == list(range(10)) and r1["first_ran"] == list(range(10, 20))
    assert r0["second_ran"] == [3] and r1["second_ran"] == [12]  # the shard's index + the rank's offset


@pytest.mark.mpi
def test_checkpointed_ingestion_on_two_ranks_reembeds_nothing(tmp_path) -> None:
    import sys
    from pathlib import Path

    from llama_index.core.ingestion import IngestionPipeline

    from aaflow_core.serve import ServerThread, create_app

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters" / "llamaindex"))
    from li_checkpoint_worker import DOCS, HashEmbeddings, transformations

    backend = HashEmbeddings()
    with ServerThread(create_app(embeddings=backend)) as server:
        stock = IngestionPipeline(transformations=transformations(server.base_url)).run(documents=list(DOCS[:8]))
        backend.counts.clear()
        done = run_mpi([str(PROGS / "checkpoint_llamaindex.py"), server.base_url, str(tmp_path)], timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = [[n.node_id, n.get_content(), n.embedding] for n in stock]
    for rank in (0, 1):
        report = json.loads((tmp_path / f"li-ck-{rank}.json").read_text())
        assert report["dirs"] == ["rank-0-of-2", "rank-1-of-2"]
        assert report["runs"] == [expected, expected]
    assert sum(backend.counts.values()) == len(expected)  # the second run embedded nothing, on either rank
