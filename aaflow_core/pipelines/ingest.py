"""The ingest job: discover -> load -> chunk -> embed -> upsert, streamed, with a manifest.

Where the parts live: `ingest_config` (what a run is given and returns), `ingest_manifest`
(job header, output hashes, manifest), `ingest_local` (one process's run), `ingest_ranks`
(N MPI ranks), `update` (`--update`), `checkpoint` (the resumable index writer). This module
only picks which one runs; imports point one way, from here down.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aaflow_core.distributed import Comm
from aaflow_core.errors import ConfigError, SkippedItem
from aaflow_core.plan import default_threads  # re-exported: the adapters and benchmarks import it from here
from aaflow_core.pipelines.discover import discover
from aaflow_core.pipelines.ingest_config import IngestConfig, IngestResult
from aaflow_core.pipelines.ingest_local import finished_job, publish_local, resumable, run_local
from aaflow_core.pipelines.ingest_manifest import job_of, job_sha256, no_input
from aaflow_core.pipelines.ingest_ranks import ingest_ranks
from aaflow_core.pipelines.update import update
from aaflow_core.stores.journal import check_checkpoint, work_dir_for
from aaflow_core.stores.layout import check_target, is_aaflow_index

__all__ = ["IngestConfig", "IngestResult", "default_threads", "ingest"]


def ingest(config: IngestConfig, files: Sequence[tuple[str, str]] | None = None,
           skipped: Sequence[SkippedItem] = (), comm: Comm | None = None) -> IngestResult:
    """Run the ingest workflow; `files` (from `discover`) may be given to ingest exactly those.

    Under an MPI launcher (or with a `comm` of size N) each rank ingests its contiguous shard
    of the files and the index gets one FAISS shard per rank (see `ingest_ranks`); the result
    is returned on every rank. Progress is checkpointed beside the index (see `checkpoint`):
    with `config.resume` an interrupted run is finished instead of started again.
    """
    comm = comm if comm is not None else Comm.world()
    if comm.size > 1:
        for name in ("accuracy_report", "update"):
            if getattr(config, name):
                raise ConfigError(name, True, "runs on one rank only; run it without mpiexec")
        return ingest_ranks(config, comm, files, skipped)
    if files is None:
        files, found_skipped = discover(config.paths, config.glob)
        skipped = [*skipped, *found_skipped]
    if not files:
        raise no_input(skipped)
    if config.update and is_aaflow_index(Path(config.index_dir)):
        return update(config, files, skipped)
    job = job_of(config, files)
    done = finished_job(config, job)
    if done is not None:
        return done
    check_checkpoint(work_dir_for(config.index_dir), resume=config.resume, discard=config.overwrite)
    check_target(Path(config.index_dir), config.overwrite or resumable(config))
    run = run_local(config, files, progress=config.progress)
    return publish_local(config, run, [*skipped, *run.skipped], job_sha256=job_sha256(job))
