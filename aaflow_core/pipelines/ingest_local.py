"""One process's ingest: files stream through load -> chunk -> embed -> upsert into a checkpointed index."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm.auto import tqdm

from aaflow_core.dataplane.schemas import PATHS
from aaflow_core.errors import SkippedItem
from aaflow_core.pipelines.checkpoint import CheckpointedIndex, with_replay
from aaflow_core.pipelines.embed_accuracy import mode_accuracy
from aaflow_core.pipelines.ingest_config import IngestConfig, IngestResult
from aaflow_core.pipelines.ingest_manifest import OutputHasher, base_manifest, job_of, job_sha256, no_input
from aaflow_core.runtime import Executor, bind
from aaflow_core.stores.journal import JOURNAL_FILE, Journal, work_dir_for
from aaflow_core.stores.layout import clear_stale, is_aaflow_index, read_manifest

OnBatch = Callable[[str, int], None]  # (stage name, rows) each time a stage emits a batch


def path_batches(files: Sequence[tuple[str, str]], per_batch: int) -> Iterator[pa.RecordBatch]:
    for i in range(0, len(files), per_batch):
        part = files[i : i + per_batch]
        yield pa.RecordBatch.from_pydict({"path": [p for p, _ in part], "source": [s for _, s in part]}, schema=PATHS)


@dataclass
class LocalRun:
    """What one process's run of the workflow produced; its index is written but not yet published."""

    store: CheckpointedIndex
    journal: Journal
    hasher: OutputHasher
    skipped: list[SkippedItem]
    phases_s: dict[str, float]
    model_load_s: float
    total_s: float
    kept: list[pa.RecordBatch]  # the stored batches, kept only for an accuracy report


def run_local(config: IngestConfig, files: Sequence[tuple[str, str]], *, ranks: int = 1,
              upsert_dir: str | None = None, work: Path | None = None, progress: bool | None = None,
              keep_digests: bool = False, before: Iterable[pa.RecordBatch] = (),
              observe: OnBatch | None = None) -> LocalRun:
    """Stream `files` through the workflow; the upsert stage writes and commits the index as windows arrive.

    The index gets the rows of `before` (kept from an index being updated) ahead of the new ones.
    The checkpoint in `work` (default: beside the index) survives a failure or a kill so that
    `resume` finishes the job; it is removed by the caller once the index is published.
    `observe` sees every stage's batches as they are emitted (the stage timeline).
    """
    plan = config.workflow(ranks).compile()
    journal = Journal(work or work_dir_for(config.index_dir), job_of(config, files, ranks),
                      resume=config.resume, discard=config.overwrite)
    hasher, kept = OutputHasher(keep=keep_digests), []

    def stored(batch: pa.RecordBatch) -> None:
        hasher.update(batch)
        if config.accuracy_report:
            kept.append(batch)

    store = None
    try:
        target = Path(upsert_dir or config.index_dir)
        clear_stale(target)
        t_setup = time.perf_counter()
        config.embedder()
        store = CheckpointedIndex(journal, target, stored, before)
        upsert = {spec.name: {"store": store} for spec in plan.ops if spec.kind == "upsert"}
        stages = with_replay(bind(plan, overrides=upsert), store)
        model_load_s = time.perf_counter() - t_setup
        with tqdm(total=0, initial=journal.rows, unit="chunk", desc="ingest",
                  disable=None if progress is None else not progress) as bar:

            def on_batch(stage: str, rows: int) -> None:
                if stage == "chunk":
                    bar.total += rows
                    bar.refresh()
                elif stage == "upsert":
                    bar.update(rows)
                if observe is not None:
                    observe(stage, rows)

            t0 = time.perf_counter()
            with Executor(stages, backend=config.executor, queue_capacity=plan.resources.queue_capacity,
                          on_batch=on_batch) as ex:
                for _ in ex.run(path_batches(files, config.files_per_batch)):
                    pass
                skipped = list(ex.operators["load"].skipped)  # type: ignore[attr-defined]
                phases = {spec.kind: round(ex.stats[spec.name].busy_s, 4) for spec in plan.ops}
        store.finish()
    except BaseException:
        if store is not None:
            store.close()
        if journal.parts:
            journal.close()  # keep what is committed: --resume continues from it
        else:
            journal.remove()
        raise
    return LocalRun(store, journal, hasher, skipped, phases, round(model_load_s, 4),
                    round(time.perf_counter() - t0, 4), kept)


def publish_local(config: IngestConfig, run: LocalRun, skipped: list[SkippedItem], **extra: Any) -> IngestResult:
    """Publish a single-rank run with its manifest (plus `extra` fields); only then drop its checkpoint."""
    try:
        if not run.hasher.chunks:
            raise no_input(skipped)
        manifest = {**base_manifest(config, 1, run.hasher.summary(), skipped), "phases_s": run.phases_s,
                    "model_load_s": run.model_load_s, "total_s": run.total_s,
                    "resumed_parts": run.store.replayed, **extra}
        if config.accuracy_report:
            manifest["accuracy"] = mode_accuracy(run.kept, config.embedder(), model=config.model, threads=config.threads,
                                                 batch_size=config.batch_size, queries=config.accuracy_queries)
        index_dir = run.store.publish(manifest)
    except BaseException:
        run.store.close()
        run.journal.close()
        raise
    run.journal.remove()
    return IngestResult(index_dir=index_dir, manifest=manifest, skipped=skipped)


def resumable(config: IngestConfig, work: Path | None = None) -> bool:
    """A checkpoint to resume exists: its run was allowed to write the index, so the resume may too."""
    return config.resume and ((work or work_dir_for(config.index_dir)) / JOURNAL_FILE).exists()


def finished_job(config: IngestConfig, job: dict[str, Any]) -> IngestResult | None:
    """With `resume`, an index this very job already published (killed while cleaning up) is the result."""
    target = Path(config.index_dir)
    if not config.resume or resumable(config) or not is_aaflow_index(target):
        return None
    manifest = read_manifest(target)
    if manifest.get("job_sha256") != job_sha256(job):
        return None
    return IngestResult(index_dir=target, manifest=manifest, skipped=[SkippedItem(**s) for s in manifest["skipped"]])
