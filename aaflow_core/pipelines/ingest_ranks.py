"""Ingest on N MPI ranks: contiguous shards of the files, one FAISS shard per rank, one manifest.

Rank 0 discovers the files and stages a hidden directory beside the target; every rank
ingests its contiguous slice of the files (document order, balanced by bytes) into its own
checkpoint and publishes that shard as `staging/shard-<rank>`; a collective check makes any rank's failure end every rank with an error naming it (rank 0
then deletes the staging directory, so a good index is never replaced by half of one);
rank 0 writes the manifest and renames the staging directory into place.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from aaflow_core.dataplane.schemas import PATHS
from aaflow_core.distributed import Comm
from aaflow_core.distributed.hosts import placement, ranks_per_host, require_inputs, require_shared_dir
from aaflow_core.errors import SkippedItem
from aaflow_core.operators.embed import models_loaded
from aaflow_core.pipelines.discover import discover
from aaflow_core.pipelines.ingest_config import IngestConfig, IngestResult
from aaflow_core.pipelines.ingest_local import resumable, run_local
from aaflow_core.pipelines.ingest_manifest import ROW_DIGESTS, base_manifest, no_input, summarize
from aaflow_core.stores.journal import work_dir_for
from aaflow_core.stores.layout import SHARD_DIR, check_target, clear_stale, new_staging, publish_staging

SKIPPED = pa.schema([("item", pa.string()), ("reason", pa.string())])
RANK_STATS = pa.schema([("rank", pa.int32()), ("host", pa.string()), ("chunks", pa.int64()), ("documents", pa.int64()),
                        ("stats", pa.string())])


def file_bytes(path: str) -> int:
    """The size that balances the shards; a file that cannot be read still counts one byte."""
    try:
        return max(1, os.stat(path).st_size)
    except OSError:
        return 1


def plan_files(config: IngestConfig, comm: Comm, files: Sequence[tuple[str, str]] | None,
               skipped: list[SkippedItem]) -> tuple[pa.Table, Path]:
    """Rank 0 finds the files, checks the target and stages; every rank gets both (Arrow bcast)."""
    table = None
    with comm.collective():
        if comm.is_root:
            if files is None:
                files, found = discover(config.paths, config.glob)
                skipped.extend(found)
            if not files:
                raise no_input(skipped)
            target = Path(config.index_dir)
            check_target(target, config.overwrite or resumable(config, rank_work(config, comm.rank)))
            if config.resume:
                clear_stale(target)  # what the killed job left; its checkpoints are kept
            staging = new_staging(target)
            table = pa.Table.from_pydict({"path": [p for p, _ in files], "source": [s for _, s in files],
                                          "bytes": [file_bytes(p) for p, _ in files]},
                                         schema=PATHS.append(pa.field("bytes", pa.int64())))
            table = table.replace_schema_metadata({"staging": str(staging)})
    table = comm.bcast_table(table)
    return table, Path(table.schema.metadata[b"staging"].decode())


def ingest_ranks(config: IngestConfig, comm: Comm, files: Sequence[tuple[str, str]] | None = None,
                 skipped: Sequence[SkippedItem] = ()) -> IngestResult:
    """Run on every rank of `comm`; returns the same result (manifest) on every rank."""
    root_skipped = list(skipped)
    if comm.hosts is None:
        placement(comm)  # so that a rank lost later is named with its host
    table, staging = plan_files(config, comm, files, root_skipped)
    try:
        require_shared_dir(comm, staging, "the index's staging directory")  # shards, checkpoints: beside it
        manifest = build_shards(config, comm, table, staging, root_skipped)
    except BaseException:
        if comm.is_root:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    manifest = json.loads(comm.bcast_table(pa.table({"m": [json.dumps(manifest)]}) if comm.is_root else None)["m"][0].as_py())
    all_skipped = [SkippedItem(**s) for s in manifest["skipped"]]
    return IngestResult(index_dir=Path(config.index_dir), manifest=manifest, skipped=all_skipped)


def build_shards(config: IngestConfig, comm: Comm, table: pa.Table, staging: Path,
                 root_skipped: list[SkippedItem]) -> dict | None:
    """Each rank writes its shard; rank 0 combines what they report and publishes the index."""
    part = comm.shard_weighted(table.column("bytes").to_numpy())
    mine = table.slice(part.start, len(part))
    my_files = list(zip(mine.column("path").to_pylist(), mine.column("source").to_pylist()))
    sizes = mine.column("bytes").to_pylist()
    shard_dir = staging / SHARD_DIR.format(comm.rank)
    digests, documents, skipped, stats = ROW_DIGESTS.empty_table(), 0, [], {}
    require_inputs(comm, [(p, b) for (p, _), b in zip(my_files, sizes)])  # before any rank loads the model
    with comm.collective():
        if my_files:
            run = run_local(config, my_files, ranks=comm.size, upsert_dir=str(shard_dir), keep_digests=True,
                            work=rank_work(config, comm.rank), progress=False if not comm.is_root else config.progress)
            digests, documents, skipped = run.hasher.table(), run.hasher.documents, run.skipped
            stats = {"phases_s": run.phases_s, "model_load_s": run.model_load_s, "total_s": run.total_s,
                     "models_loaded": models_loaded()}
            if digests.num_rows:
                run.store.publish({**base_manifest(config, comm.size, run.hasher.summary(), skipped), **stats})
            else:
                run.store.discard()
            run.journal.close()
    all_digests = comm.gather_table(digests)
    all_skipped = comm.gather_table(pa.Table.from_pylist([vars(s) for s in skipped], schema=SKIPPED))
    mine_stats = {**stats, "bytes_sent": comm.stats.bytes_sent}
    per_rank = comm.gather_table(pa.table({"rank": pa.array([comm.rank], pa.int32()), "host": [socket.gethostname()],
                                           "chunks": pa.array([digests.num_rows], pa.int64()),
                                           "documents": pa.array([documents], pa.int64()),
                                           "stats": [json.dumps(mine_stats)]}, schema=RANK_STATS))
    manifest = None
    with comm.collective():
        if comm.is_root:
            manifest = publish(config, comm, staging, all_digests, per_rank,
                               [*root_skipped, *(SkippedItem(**r) for r in all_skipped.to_pylist())])
    return manifest


def publish(config: IngestConfig, comm: Comm, staging: Path, digests: pa.Table, per_rank: pa.Table,
            skipped: list[SkippedItem]) -> dict:
    """Rank 0: the manifest over all rows in global document order, then the atomic rename."""
    if not digests.num_rows:
        raise no_input(skipped)
    ranks = [{"rank": r, "host": h, "chunks": c, "documents": d, **json.loads(s)}
             for r, h, c, d, s in zip(*per_rank.to_pydict().values())]
    with_rows = [r for r in ranks if r["chunks"]]
    summary = summarize(digests, documents=sum(r["documents"] for r in ranks))  # a document lives on one rank
    manifest = {
        **base_manifest(config, comm.size, summary, skipped),
        "shards": [{"dir": SHARD_DIR.format(r["rank"]), "rows": r["chunks"]} for r in with_rows],
        "phases_s": {p: max(r["phases_s"][p] for r in with_rows) for p in with_rows[0]["phases_s"]},
        "model_load_s": max(r["model_load_s"] for r in with_rows),
        "total_s": max(r["total_s"] for r in with_rows),
        "per_rank": ranks,
        "hosts": ranks_per_host([r["host"] for r in ranks]),
        "bytes_between_ranks": sum(r["bytes_sent"] for r in ranks),
    }
    publish_staging(staging, Path(config.index_dir), manifest)
    shutil.rmtree(work_dir_for(config.index_dir), ignore_errors=True)  # every rank's checkpoint
    return manifest


def rank_work(config: IngestConfig, rank: int) -> Path:
    """Each rank checkpoints its own shard; a resume needs the same number of ranks."""
    return work_dir_for(config.index_dir) / f"rank-{rank:05d}"
