"""The ingest job: discover -> load -> chunk -> embed -> upsert, streamed, with a manifest."""
from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm.auto import tqdm

from aaflow_core.dataplane.schemas import PATHS
from aaflow_core.dataplane.views import embedding_matrix
from aaflow_core.errors import ConfigError, NoInputError
from aaflow_core.models.embedding import Embedder
from aaflow_core.operators.embed import shared_embedder
from aaflow_core.operators.load import SkippedItem
from aaflow_core.pipelines.embed_accuracy import mode_accuracy
from aaflow_core.plan import Resources, Workflow, package_versions, specs
from aaflow_core.plan.placement import available_cpus, intra_op_threads
from aaflow_core.plan.workflow import plan_fingerprint
from aaflow_core.runtime import Executor, bind

PHASES = {"load": "load", "chunk": "chunk", "embed": "embed", "upsert": "upsert"}


def default_threads() -> int:
    """Intra-op threads for a single-rank run: every CPU this process may use, once (plan.placement)."""
    return intra_op_threads(available_cpus(), ranks=1)


@dataclass(frozen=True)
class IngestConfig:
    """Everything an ingest run depends on; validated once, here."""

    paths: tuple[str, ...]
    index_dir: str
    chunk_size: int = 1000
    chunk_overlap: int = 100
    batch_size: int = 32
    window: int = 256
    threads: int = field(default_factory=default_threads)
    files_per_batch: int = 16
    glob: str | None = None
    model: str | None = None
    overwrite: bool = False
    max_file_bytes: int = 64 * 2**20
    backend: str = "threads"
    progress: bool | None = None
    precision: str = "fp32"  # embedding mode: fp32|bf16|int8 (see aaflow_core.models.modes)
    embed_backend: str = "torch"  # torch|onnx ("backend" above is the executor's)
    accuracy_report: bool = False  # opt-in: a second fp32 pass over sampled chunks, figures in the manifest
    accuracy_queries: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.paths:
            raise ConfigError("paths", self.paths, "give at least one file or directory")
        for name in ("batch_size", "window", "threads", "files_per_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(name, getattr(self, name), "must be >= 1")
        if self.window < self.batch_size:
            raise ConfigError("window", self.window, f"must be >= batch_size ({self.batch_size})")
        self.workflow()  # the operator specs validate their own parameters

    def workflow(self) -> Workflow:
        wf = Workflow(Resources(threads=self.threads))
        wf.add(specs.load(max_file_bytes=self.max_file_bytes))
        wf.add(specs.chunk(chunk_size=self.chunk_size, chunk_overlap=self.chunk_overlap))
        wf.add(specs.embed(model=self.model, window=self.window, encode_batch_size=self.batch_size,
                           precision=self.precision, backend=self.embed_backend))
        wf.add(specs.upsert(index_dir=self.index_dir))
        return wf

    def resources(self) -> dict[str, Any]:
        return {"threads": self.threads, "ranks": 1, "batch_size": self.batch_size, "window": self.window,
                "files_per_batch": self.files_per_batch, "backend": self.backend}

    def embedder(self) -> Embedder:
        return shared_embedder(self.model, self.threads, self.precision, self.embed_backend)


@dataclass
class IngestResult:
    index_dir: Path
    manifest: dict[str, Any]
    skipped: list[SkippedItem]


class OutputHasher:
    """sha256 over (chunk_id, text, embedding bytes) of every stored row, in order."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.rows = 0
        self.documents: set[str] = set()

    def update(self, batch: pa.RecordBatch) -> None:
        for cid, text in zip(batch.column("chunk_id").to_pylist(), batch.column("text").to_pylist()):
            self._h.update(cid.encode() + b"\0" + text.encode() + b"\0")
        if batch.num_rows:
            self._h.update(memoryview(embedding_matrix(batch.column("embedding"))).cast("B"))
        self.documents.update(batch.column("doc_id").to_pylist())
        self.rows += batch.num_rows

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def path_batches(files: Sequence[tuple[str, str]], per_batch: int) -> Iterator[pa.RecordBatch]:
    for i in range(0, len(files), per_batch):
        part = files[i : i + per_batch]
        yield pa.RecordBatch.from_pydict({"path": [p for p, _ in part], "source": [s for _, s in part]}, schema=PATHS)


def ingest(config: IngestConfig, files: Sequence[tuple[str, str]] | None = None,
           skipped: Sequence[SkippedItem] = ()) -> IngestResult:
    """Run the ingest workflow; `files` (from `discover`) may be given to ingest a shard."""
    from aaflow_core.pipelines.discover import discover

    if files is None:
        files, found_skipped = discover(config.paths, config.glob)
        skipped = [*skipped, *found_skipped]
    if not files:
        reasons = "; ".join(f"{s.item}: {s.reason}" for s in skipped) or "no paths given"
        raise NoInputError(f"nothing to ingest ({reasons})")
    t_setup = time.perf_counter()
    embedder = config.embedder()
    plan = config.workflow().compile()
    stages = bind(plan, overrides={"upsert": {"overwrite": config.overwrite}})
    model_load_s = time.perf_counter() - t_setup

    hasher = OutputHasher()
    with tqdm(total=0, unit="chunk", desc="ingest", disable=None if config.progress is None else not config.progress) as bar:

        def on_batch(stage: str, rows: int) -> None:
            if stage == "chunk":
                bar.total += rows
                bar.refresh()
            elif stage == "upsert":
                bar.update(rows)

        t0 = time.perf_counter()
        with Executor(stages, backend=config.backend, queue_capacity=plan.resources.queue_capacity,
                      on_batch=on_batch) as ex:
            writer = ex.operators["upsert"].writer  # type: ignore[attr-defined]
            try:
                kept: list[pa.RecordBatch] = []
                for out in ex.run(path_batches(files, config.files_per_batch)):
                    hasher.update(out)
                    if config.accuracy_report:
                        kept.append(out)
                load_op = ex.operators["load"]
                all_skipped = [*skipped, *load_op.skipped]  # type: ignore[attr-defined]
                if hasher.rows == 0:
                    raise NoInputError("nothing to ingest: " + "; ".join(f"{s.item}: {s.reason}" for s in all_skipped))
                total_s = time.perf_counter() - t0
                manifest = {
                    "fingerprint": plan_fingerprint(plan),
                    "plan": plan.to_json(),
                    "resources": config.resources(),
                    "model": Path(embedder.path).name,
                    "dim": embedder.dim,
                    "embed_mode": embedder.mode.to_dict(),
                    "counts": {"documents": len(hasher.documents), "chunks": hasher.rows,
                               "skipped": len(all_skipped)},
                    "skipped": [asdict(s) for s in all_skipped],
                    "output_sha256": hasher.hexdigest(),
                    "phases_s": {phase: round(ex.stats[name].busy_s, 4) for phase, name in PHASES.items()},
                    "model_load_s": round(model_load_s, 4),
                    "total_s": round(total_s, 4),
                    "versions": package_versions(),
                }
                if config.accuracy_report:
                    manifest["accuracy"] = mode_accuracy(kept, embedder, model=config.model, threads=config.threads,
                                                         batch_size=config.batch_size, queries=config.accuracy_queries)
                index_dir = writer.publish(manifest)
            except BaseException:
                writer.discard()
                raise
    return IngestResult(index_dir=index_dir, manifest=manifest, skipped=all_skipped)
