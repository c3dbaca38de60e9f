"""`aaflow ingest --update`: bring an existing index up to date; unchanged documents cost nothing.

A document is known by its source name (its `doc_id`) and its content by its chunk ids, which
are derived from the text. The input is loaded and chunked (cheap next to embedding) and
compared, document by document, with the ids the index holds:
- unchanged documents are not embedded again; if nothing changed the index is not touched;
- a changed document's old chunks are dropped and its new chunks added;
- new documents are added; documents the input does not name (or that now fail to load) stay.
The updated index holds the kept rows in their old order, then the new rows in input order,
and is published atomically like any ingest; its embedding run is checkpointed (`--resume`).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from aaflow_core.errors import IndexDirError, SkippedItem
from aaflow_core.operators.load import doc_id_for
from aaflow_core.pipelines.ingest_config import IngestConfig, IngestResult
from aaflow_core.pipelines.ingest_local import path_batches, publish_local, run_local
from aaflow_core.plan import Workflow
from aaflow_core.runtime import Executor, bind
from aaflow_core.stores.faiss_store import stored_batches
from aaflow_core.stores.journal import JOURNAL_FILE, work_dir_for
from aaflow_core.stores.layout import index_shards, read_manifest

Digests = dict[str, Any]  # doc_id -> running sha256 of its chunk ids


@dataclass(frozen=True)
class Changes:
    """How the input compares with the index, by document (source names)."""

    unchanged: tuple[str, ...]
    changed: tuple[str, ...]
    new: tuple[str, ...]
    kept: int  # documents in the index that the input does not give

    def to_dict(self) -> dict[str, Any]:
        return {"unchanged": len(self.unchanged), "changed": len(self.changed), "new": len(self.new),
                "kept_not_in_input": self.kept, "changed_sources": list(self.changed), "new_sources": list(self.new)}


def content_ops(plan_json: str) -> list[dict[str, Any]]:
    """The operators that decide stored content (not where it is stored)."""
    return [op for op in json.loads(plan_json)["ops"] if op["kind"] != "upsert"]


def check_same_plan(manifest: dict[str, Any], config: IngestConfig) -> None:
    stored, asked = content_ops(manifest["plan"]), content_ops(config.workflow().compile().to_json())
    if stored != asked:
        diff = [f"{a['name']}: {b['params']} (index) vs {a['params']}" for a, b in zip(asked, stored) if a != b]
        raise IndexDirError(f"{config.index_dir}: the index was built with other settings ({'; '.join(diff)}); "
                            "update it with the same settings, or rebuild it with --overwrite")


def _digest(digests: Digests, doc_ids: Sequence[str], chunk_ids: Sequence[str]) -> None:
    for doc, chunk in zip(doc_ids, chunk_ids):
        digests.setdefault(doc, hashlib.sha256()).update(chunk.encode() + b"\n")


def stored_documents(index_dir: Path) -> dict[str, str]:
    """doc_id -> digest of its chunk ids, over every row of the index."""
    digests: Digests = {}
    for shard in index_shards(index_dir):
        for batch in pq.ParquetFile(shard.rows_file).iter_batches(columns=["doc_id", "chunk_id"]):
            _digest(digests, batch.column("doc_id").to_pylist(), batch.column("chunk_id").to_pylist())
    return {doc: h.hexdigest() for doc, h in digests.items()}


def scanned_documents(config: IngestConfig, files: Sequence[tuple[str, str]]) -> tuple[dict[str, str], list[SkippedItem]]:
    """doc_id -> digest of the chunk ids the input gives now (load and chunk only), and what was skipped."""
    full = config.workflow()
    wf = Workflow(full.resources)
    for spec in full.compile().ops[:2]:  # load, chunk
        wf.add(spec)
    digests: Digests = {}
    with Executor(bind(wf.compile()), backend=config.executor) as ex:
        for batch in ex.run(path_batches(files, config.files_per_batch)):
            _digest(digests, batch.column("doc_id").to_pylist(), batch.column("chunk_id").to_pylist())
        skipped = list(ex.operators["load"].skipped)  # type: ignore[attr-defined]
    return {doc: h.hexdigest() for doc, h in digests.items()}, skipped


def compare(stored: dict[str, str], scanned: dict[str, str], files: Sequence[tuple[str, str]]) -> Changes:
    unchanged, changed, new = [], [], []
    for _, source in files:
        doc = doc_id_for(source)
        if doc not in scanned:
            continue  # skipped by load: whatever the index holds for it stays
        if doc not in stored:
            new.append(source)
        elif stored[doc] == scanned[doc]:
            unchanged.append(source)
        else:
            changed.append(source)
    given = {doc_id_for(s) for _, s in files}
    return Changes(tuple(unchanged), tuple(changed), tuple(new), sum(1 for d in stored if d not in given))


def kept_rows(index_dir: Path, replaced: set[str]) -> Iterator[pa.RecordBatch]:
    """The index's rows (with vectors) minus those of the documents being replaced."""
    drop = pa.array(sorted(replaced), pa.string())
    for batch in stored_batches(index_dir):
        keep = batch.filter(pc.invert(pc.is_in(batch.column("doc_id"), value_set=drop)))
        if keep.num_rows:
            yield keep


def update(config: IngestConfig, files: Sequence[tuple[str, str]], skipped: Sequence[SkippedItem]) -> IngestResult:
    """Update `config.index_dir` (an existing aaflow index) from `files`; see the module docstring."""
    target = Path(config.index_dir)
    manifest = read_manifest(target)
    check_same_plan(manifest, config)
    scanned, load_skipped = scanned_documents(config, files)
    all_skipped = [*skipped, *load_skipped]
    changes = compare(stored_documents(target), scanned, files)
    to_embed = [f for f in files if f[1] in set(changes.changed) | set(changes.new)]
    if not to_embed:
        work = work_dir_for(target)
        if config.resume and (work / JOURNAL_FILE).exists():  # killed after publishing: the job is done
            shutil.rmtree(work, ignore_errors=True)
        return IngestResult(index_dir=target, manifest={**manifest, "update": changes.to_dict()}, skipped=all_skipped)
    replaced = {doc_id_for(s) for s in changes.changed}
    run = run_local(replace(config, overwrite=False), to_embed, progress=config.progress,
                    before=kept_rows(target, replaced))
    return publish_local(config, run, all_skipped, update=changes.to_dict())
