"""A checkpointed AAFlowIngestionPipeline SIGKILLed at random points, rerun, against a remote embeddings endpoint.

The endpoint (loopback, deterministic vectors per text) counts requests per text: a micro-batch
committed before a kill is never requested again, and the final nodes, docstore and vector
store equal stock's uninterrupted run.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from llama_index.core.ingestion import IngestionPipeline

from aaflow_core.errors import CheckpointError
from aaflow_core.serve import ServerThread, create_app
from aaflow_core.stores.journal import JOURNAL_FILE

sys.path.insert(0, str(Path(__file__).parent))
from li_checkpoint_worker import DOCS, HashEmbeddings, dump, stores, transformations  # noqa: E402

WORKER = Path(__file__).with_name("li_checkpoint_worker.py")
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def server() -> Any:
    backend = HashEmbeddings()
    with ServerThread(create_app(embeddings=backend, latency_s=0.02)) as running:
        yield running.base_url, backend


@pytest.fixture(scope="module")
def stock(server: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    parts = stores()
    nodes = IngestionPipeline(transformations=transformations(server[0]), **parts).run(documents=list(DOCS))
    out = tmp_path_factory.mktemp("stock")
    dump(nodes, parts, out)
    return out


def committed_texts(work: Path) -> set[str]:
    keys: set[str] = set()
    for line in (work / JOURNAL_FILE).read_text().split("\n")[1:-1]:
        part = json.loads(line)
        keys |= set(pq.read_table(work / f"part-{part['index']:06d}.parquet", columns=["key"])["key"].to_pylist())
    return keys


def parts_committed(work: Path) -> int:
    try:
        return (work / JOURNAL_FILE).read_text().count("\n") - 1
    except OSError:
        return 0


def worker(base_url: str, work: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, str(WORKER), base_url, str(work), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_ingest_survives_sigkill_and_never_reembeds(server: Any, stock: Path, tmp_path: Path, seed: int = 7) -> None:
    base_url, backend = server
    rng = random.Random(seed)
    work, out = tmp_path / "ck", tmp_path / "out"
    total = len(json.loads((stock / "nodes.json").read_text()))
    backend.counts.clear()
    at_kill: dict[str, int] = {}
    for target in sorted(rng.sample(range(1, total // 4 - 10), 2)):
        proc = worker(base_url, work, out)
        while parts_committed(work) < target and proc.poll() is None:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.02))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert not out.exists()  # nothing half-written: the stores are written at the end only
            done = committed_texts(work)
            at_kill.update({t: backend.counts[t] for t in backend.counts if key(t) in done and t not in at_kill})
    proc = worker(base_url, work, out)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert at_kill, "no kill landed before the run ended"
    again = [t for t, count in at_kill.items() if backend.counts[t] != count]
    assert not again, f"{len(again)} texts committed before a kill were embedded again"
    for name in ("nodes.json", "docstore.json", "vector_store.json"):
        assert json.loads((out / name).read_text()) == json.loads((stock / name).read_text()), name


def test_checkpoint_of_another_model_is_refused(server: Any, tmp_path: Path) -> None:
    from aaflow_adapters.llamaindex import AAFlowIngestionPipeline

    work = tmp_path / "ck"
    AAFlowIngestionPipeline(transformations=transformations(server[0]), checkpoint=str(work)).run(documents=DOCS[:2])
    before = {p.name: p.read_bytes() for p in work.iterdir() if p.name != "lock"}
    other = transformations(server[0])
    other[1] = other[1].model_copy(update={"model_name": "text-embedding-3-large"})
    with pytest.raises(CheckpointError, match="differs in model"):
        AAFlowIngestionPipeline(transformations=other, checkpoint=str(work)).run(documents=DOCS[:2])
    assert {p.name: p.read_bytes() for p in work.iterdir() if p.name != "lock"} == before


def test_arun_resumes_from_the_checkpoint_without_requests(server: Any, stock: Path, tmp_path: Path) -> None:
    import asyncio

    from aaflow_adapters.llamaindex import AAFlowIngestionPipeline

    base_url, backend = server
    work = str(tmp_path / "ck")
    first = asyncio.run(AAFlowIngestionPipeline(transformations=transformations(base_url), checkpoint=work)
                        .arun(documents=list(DOCS)))
    backend.counts.clear()
    again = asyncio.run(AAFlowIngestionPipeline(transformations=transformations(base_url), checkpoint=work)
                        .arun(documents=list(DOCS)))
    assert not backend.counts  # every micro-batch answered from the checkpoint
    expected = json.loads((stock / "nodes.json").read_text())
    assert [[n.node_id, n.get_content(), n.embedding] for n in again] == expected
    assert [n.embedding for n in first] == [n.embedding for n in again]


def test_truncated_part_is_a_clear_error_and_left_alone(server: Any, tmp_path: Path) -> None:
    from aaflow_adapters.llamaindex import AAFlowIngestionPipeline

    work = tmp_path / "ck"
    AAFlowIngestionPipeline(transformations=transformations(server[0]), checkpoint=str(work)).run(documents=DOCS[:2])
    part = work / "part-000000.parquet"
    part.write_bytes(part.read_bytes()[:100])
    before = {p.name: p.read_bytes() for p in work.iterdir() if p.name != "lock"}
    with pytest.raises(CheckpointError, match="part-000000.parquet: committed part changed or was truncated"):
        AAFlowIngestionPipeline(transformations=transformations(server[0]), checkpoint=str(work)).run(
            documents=DOCS[:2])
    assert {p.name: p.read_bytes() for p in work.iterdir() if p.name != "lock"} == before
