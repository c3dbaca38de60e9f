"""Bounded memory: what an ingest holds does not grow with the corpus (the smaller case of
benchmarks/memory.py, which measures up to 1 GiB of text; docs/reliability.md states the bound).

Two measures, both on the real model and real FAISS, over a corpus three times larger than
everything the queues can hold:
- the Arrow memory in use (every batch in flight is Arrow), sampled during an in-process run:
  it must stay below the queue bound, which a runtime that kept what it streamed would break;
- the peak RSS (VmHWM) of a fresh `aaflow ingest` process: under the documented bound.
"""
from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from aaflow_core.pipelines import IngestConfig, ingest
from benchmarks.memory import make_corpus, measure

pytestmark = pytest.mark.model

RSS_BOUND_MB = 1280  # docs/reliability.md: one ingest process, default queues, files <= 1 MiB
FILE_BYTES = 2**16
# more than three times the queue bound (below) for the largest file make_corpus can write,
# FILE_BYTES plus one 4 KiB paragraph: which paragraphs pydoc renders depends on the process's
# state, so the largest file differs between environments (12 MiB was 3x only up to ~69 KB files)
CORPUS_BYTES = 13 * 2**20
QUEUE_CAPACITY = 4
SETTINGS = {"chunk_size": 100_000, "chunk_overlap": 0, "window": 2, "batch_size": 2, "threads": 2,
            "files_per_batch": 1}
FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items()] + ["--no-progress"]
# docs/reliability.md: before the window re-batching, two queues and two stages (load, chunk) hold
# batches of `files_per_batch` files, their text at most twice (documents, then chunks); after it,
# three queues and three stages (re-batching, embed, upsert) hold windows of `window` chunks and
# their vectors. Every queue full, one batch per stage, one more taken for the reorder buffer:
def arrow_bound(largest_file: int) -> int:
    up = SETTINGS["files_per_batch"] * largest_file * 2
    down = SETTINGS["window"] * (min(SETTINGS["chunk_size"], largest_file) + 384 * 4)
    return 2 * (QUEUE_CAPACITY + 2) * up + 3 * (QUEUE_CAPACITY + 2) * down


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("memory") / "corpus"
    make_corpus(folder, CORPUS_BYTES, file_bytes=FILE_BYTES)
    return folder


def test_arrow_memory_in_flight_stays_under_the_queue_bound(corpus, tmp_path, embedder):
    peak, done = [pa.total_allocated_bytes()], threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], pa.total_allocated_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = ingest(IngestConfig(paths=(str(corpus),), index_dir=str(tmp_path / "index"), progress=False,
                                     **SETTINGS))
    finally:
        done.set()
        sampler.join()
    bound = arrow_bound(max(f.stat().st_size for f in corpus.iterdir()))
    assert result.manifest["counts"]["chunks"] == len(list(corpus.iterdir()))  # files < chunk_size: one chunk each
    assert 3 * bound < CORPUS_BYTES  # keeping the corpus would break the bound
    assert 4 * FILE_BYTES < peak[0] < bound, (peak[0], bound)


def test_peak_rss_of_an_ingest_process_is_under_the_documented_bound(corpus, tmp_path):
    run = measure(corpus, tmp_path / "index", files_per_batch=1, flags=FLAGS)
    assert run["chunks"] == len(list(corpus.iterdir())) and run["peak_rss_mb"] < RSS_BOUND_MB, run
