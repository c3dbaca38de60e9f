"""An ingest run's record: the checkpoint header of its job, streamed output hashes, the manifest."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa

from aaflow_core.dataplane.views import embedding_matrix
from aaflow_core.errors import NoInputError, SkippedItem
from aaflow_core.models.cpu import cpu_summary
from aaflow_core.pipelines.ingest_config import IngestConfig
from aaflow_core.plan import package_versions
from aaflow_core.plan.workflow import plan_fingerprint
from aaflow_core.remote.embedder import EndpointEmbedder


ROW_DIGESTS = pa.schema([("row", pa.binary(32)), ("chunk", pa.binary(32))])


class OutputHasher:
    """Streams the manifest's output hashes over the stored rows, in order.

    Each row gets two digests: `row` covers (chunk_id, text, embedding bytes), equal on reruns
    with the same resources; `chunk` covers (chunk_id, text) only, equal for any number of
    ranks, since embedding bits depend on how rows were batched for the model. The output
    hashes are sha256 over the digests concatenated in global document order, so one rank or
    N ranks give the same value. The hashes are running ones: memory does not grow with the
    corpus, unless `keep` holds the digests (64 bytes a row) for a rank to send to rank 0.
    """

    def __init__(self, keep: bool = False) -> None:
        self.documents = 0
        self.chunks = 0
        self._last_doc: str | None = None
        self._row_hash, self._chunk_hash = hashlib.sha256(), hashlib.sha256()
        self._kept: tuple[bytearray, bytearray] | None = (bytearray(), bytearray()) if keep else None

    def update(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        vectors = embedding_matrix(batch.column("embedding"))
        columns = (batch.column(c).to_pylist() for c in ("doc_id", "chunk_id", "text"))
        for i, (doc, cid, text) in enumerate(zip(*columns)):
            if doc != self._last_doc:  # rows arrive grouped by document
                self.documents, self._last_doc = self.documents + 1, doc
            base = hashlib.sha256(cid.encode() + b"\0" + text.encode() + b"\0")
            chunk = base.digest()
            base.update(vectors[i])
            row = base.digest()
            self._row_hash.update(row)
            self._chunk_hash.update(chunk)
            if self._kept is not None:
                self._kept[0].extend(row)
                self._kept[1].extend(chunk)
        self.chunks += batch.num_rows

    def summary(self) -> dict[str, Any]:
        return {"counts": {"documents": self.documents, "chunks": self.chunks},
                "output_sha256": self._row_hash.hexdigest(), "chunks_sha256": self._chunk_hash.hexdigest()}

    def table(self) -> pa.Table:
        """The kept per-row digests (for `summarize` on rank 0)."""
        assert self._kept is not None, "OutputHasher(keep=True) keeps the digests"
        n = self.chunks
        columns = [pa.Array.from_buffers(pa.binary(32), n, [None, pa.py_buffer(bytes(b))]) for b in self._kept]
        return pa.table(columns, schema=ROW_DIGESTS)


def summarize(digests: pa.Table, documents: int) -> dict[str, Any]:
    """The manifest's counts and output hashes from per-row digests gathered in global order."""
    def over(column: pa.ChunkedArray) -> str:
        hasher = hashlib.sha256()
        for part in column.chunks:
            if len(part):
                hasher.update(memoryview(part.buffers()[1])[part.offset * 32 : (part.offset + len(part)) * 32])
        return hasher.hexdigest()

    return {"counts": {"documents": documents, "chunks": digests.num_rows},
            "output_sha256": over(digests.column("row")), "chunks_sha256": over(digests.column("chunk"))}


def job_header(fingerprint: str, resources: dict[str, Any], files: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the plan, the resources and the file list."""
    listing = json.dumps([list(f) for f in files], separators=(",", ":")).encode()
    return {"fingerprint": fingerprint, "resources": resources, "files_sha256": hashlib.sha256(listing).hexdigest(),
            "files": len(files)}


def job_of(config: IngestConfig, files: Sequence[tuple[str, str]], ranks: int = 1) -> dict[str, Any]:
    """The checkpoint header of this job: a checkpoint resumes only the job that wrote it."""
    return job_header(plan_fingerprint(config.workflow(ranks).compile()), config.resources(ranks), files)


def job_sha256(job: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()


def base_manifest(config: IngestConfig, ranks: int, summary: dict[str, Any],
                  skipped: Sequence[SkippedItem]) -> dict[str, Any]:
    """The manifest's common part; `summary` holds the counts and output hashes (OutputHasher.summary)."""
    plan = config.workflow(ranks).compile()
    embedder = config.embedder()
    manifest = {
        "fingerprint": plan_fingerprint(plan),
        "plan": plan.to_json(),
        "resources": config.resources(ranks),
        "model": embedder.path if config.embed_url else Path(embedder.path).name,
        "dim": embedder.dim,
        "embed_mode": {**embedder.mode.to_dict(), "auto": config.auto_choice},
        **({"remote_usage": embedder.usage.as_dict()} if isinstance(embedder, EndpointEmbedder) else {}),
        "skipped": [asdict(s) for s in skipped],
        "versions": package_versions(),
        "cpu": cpu_summary(),  # speeds and bf16/int8 choices depend on it: compare runs on one machine only
        **summary,
    }
    manifest["counts"] = {**summary["counts"], "skipped": len(skipped)}
    return manifest


def no_input(skipped: Sequence[SkippedItem]) -> NoInputError:
    """The one "nothing to ingest" error, naming every skipped item and why."""
    reasons = "; ".join(f"{s.item}: {s.reason}" for s in skipped) or "no paths given"
    return NoInputError(f"nothing to ingest ({reasons})")
