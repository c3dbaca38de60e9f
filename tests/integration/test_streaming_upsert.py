"""The upsert stage writes the index while embedding continues, each vector once (the stage timeline)."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from aaflow_core.pipelines import IngestConfig, discover
from aaflow_core.pipelines.checkpoint import STAGING
from aaflow_core.pipelines.ingest_local import publish_local, run_local
from aaflow_core.stores import IndexReader
from aaflow_core.stores.faiss_store import read_vectors, segment_paths
from aaflow_core.stores.journal import PART_FILE, work_dir_for

pytestmark = pytest.mark.model


def test_upsert_writes_the_index_while_embedding_continues(small_corpus, tmp_path, embedder):
    config = IngestConfig(paths=(str(small_corpus),), index_dir=str(tmp_path / "index"), progress=False, threads=2,
                          chunk_size=400, chunk_overlap=40, window=4, batch_size=4)
    files, _ = discover(config.paths)
    work = work_dir_for(config.index_dir)
    timeline: list[tuple[str, list[str], list[str]]] = []  # (stage, staged index files, first part's columns)

    def observe(stage: str, rows: int) -> None:
        part = work / PART_FILE.format(0)
        columns = pq.read_schema(part).names if part.exists() else []
        timeline.append((stage, sorted(p.name for p in (work / STAGING).glob("index*.faiss")), columns))

    run = run_local(config, files, observe=observe)
    result = publish_local(config, run, run.skipped)

    embeds = [i for i, (stage, _, _) in enumerate(timeline) if stage == "embed"]
    upserts = [i for i, (stage, _, _) in enumerate(timeline) if stage == "upsert"]
    capacity = config.workflow().compile().resources.queue_capacity
    # With this many windows, bounded queues force the order below whatever the thread timing:
    # embed can run at most capacity + 2 windows ahead of the upsert stage's first commit.
    assert len(embeds) >= capacity + 4 and len(upserts) == len(embeds)
    first = upserts[0]
    assert first < embeds[-2]  # the first window was in the index before the model started the last one
    _, staged, columns = timeline[first]
    assert staged == ["index.faiss"]  # ... as a committed FAISS segment of the index itself,
    assert columns == ["chunk_id"]  # while the journal's part names its chunks and holds no vectors

    # each vector written once: one segment per committed window, together exactly the index's rows
    segments = segment_paths(result.index_dir)
    assert len(segments) == len(upserts)
    rows = len(IndexReader(result.index_dir))
    assert read_vectors(result.index_dir).ntotal == rows == result.manifest["counts"]["chunks"]
