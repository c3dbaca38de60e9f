"""The ingest job: discover -> load -> chunk -> embed -> upsert, streamed, with a manifest."""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm.auto import tqdm

from aaflow_core.dataplane.schemas import PATHS
from aaflow_core.dataplane.views import embedding_matrix
from aaflow_core.distributed import Comm
from aaflow_core.errors import ConfigError, NoInputError
from aaflow_core.models.auto import choose_mode
from aaflow_core.models.cpu import cpu_summary
from aaflow_core.models.embedding import Embedder
from aaflow_core.models.modes import AUTO, check_request
from aaflow_core.operators.embed import shared_embedder
from aaflow_core.operators.remote_embed import EndpointEmbedder, endpoint_embedder
from aaflow_core.operators.load import SkippedItem
from aaflow_core.pipelines.embed_accuracy import mode_accuracy
from aaflow_core.plan import Resources, Workflow, package_versions, specs
from aaflow_core.plan.placement import available_cpus, intra_op_threads
from aaflow_core.plan.workflow import plan_fingerprint
from aaflow_core.runtime import Executor, bind
from aaflow_core.pipelines.checkpoint import assemble, checkpointed, job_header
from aaflow_core.stores.faiss_store import IndexWriter, check_target, clear_stale, is_aaflow_index, read_manifest
from aaflow_core.stores.journal import JOURNAL_FILE, Journal, check_checkpoint, work_dir_for

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
    resume: bool = False  # finish an interrupted run from its checkpoint (see pipelines.checkpoint)
    update: bool = False  # bring an existing index up to date (see pipelines.update)
    max_file_bytes: int = 64 * 2**20
    backend: str = "threads"
    progress: bool | None = None
    precision: str = "fp32"  # embedding mode: fp32|bf16|int8, or auto (see aaflow_core.models.modes)
    embed_backend: str = "torch"  # torch|onnx|openvino, or auto ("backend" above is the executor's)
    accuracy_report: bool = False  # opt-in: a second fp32 pass over sampled chunks, figures in the manifest
    accuracy_queries: tuple[str, ...] = ()
    embed_url: str | None = None  # an OpenAI-compatible endpoint: `model` names its model (aaflow_core.remote)
    rpm: float | None = None  # the endpoint's limits, when known
    tpm: float | None = None
    # set when precision/backend were `auto`: the measured choice and why (models.auto), for the manifest
    auto_choice: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.paths:
            raise ConfigError("paths", self.paths, "give at least one file or directory")
        for name in ("batch_size", "window", "threads", "files_per_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(name, getattr(self, name), "must be >= 1")
        if self.update and self.overwrite:
            raise ConfigError("update", True, "conflicts with overwrite (update keeps the index, overwrite replaces it)")
        if self.embed_url is not None and self.accuracy_report:
            raise ConfigError("accuracy_report", True, "compares local embedding modes; not with an embedding endpoint")
        if self.embed_url is None and (self.rpm is not None or self.tpm is not None):
            raise ConfigError("rpm/tpm", (self.rpm, self.tpm), "limit an embedding endpoint; give embed_url too")
        if self.window < self.batch_size:
            raise ConfigError("window", self.window, f"must be >= batch_size ({self.batch_size})")
        if check_request(self.precision, self.embed_backend)[0] == AUTO:
            if self.embed_url is not None:
                raise ConfigError("precision", AUTO, "picks a local embedding engine; not with an embedding endpoint")
            choice = choose_mode(self.model, self.threads)  # the plan records the concrete mode
            object.__setattr__(self, "precision", choice.precision)
            object.__setattr__(self, "embed_backend", choice.backend)
            object.__setattr__(self, "auto_choice", choice.to_dict())
        self.workflow()  # the operator specs validate their own parameters

    def workflow(self, ranks: int = 1) -> Workflow:
        wf = Workflow(Resources(threads=self.threads, ranks=ranks))
        wf.add(specs.load(max_file_bytes=self.max_file_bytes))
        wf.add(specs.chunk(chunk_size=self.chunk_size, chunk_overlap=self.chunk_overlap))
        wf.add(specs.embed(model=self.model, window=self.window, encode_batch_size=self.batch_size,
                           precision=self.precision, backend=self.embed_backend, endpoint=self.embed_url,
                           rpm=self.rpm, tpm=self.tpm))
        wf.add(specs.upsert(index_dir=self.index_dir))
        return wf

    def resources(self, ranks: int = 1) -> dict[str, Any]:
        return {"threads": self.threads, "ranks": ranks, "batch_size": self.batch_size, "window": self.window,
                "files_per_batch": self.files_per_batch, "backend": self.backend}

    def embedder(self) -> Embedder | EndpointEmbedder:
        if self.embed_url is not None:
            assert self.model is not None
            return endpoint_embedder(self.embed_url, self.model, self.rpm, self.tpm)
        return shared_embedder(self.model, self.threads, self.precision, self.embed_backend)


@dataclass
class IngestResult:
    index_dir: Path
    manifest: dict[str, Any]
    skipped: list[SkippedItem]


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


def path_batches(files: Sequence[tuple[str, str]], per_batch: int) -> Iterator[pa.RecordBatch]:
    for i in range(0, len(files), per_batch):
        part = files[i : i + per_batch]
        yield pa.RecordBatch.from_pydict({"path": [p for p, _ in part], "source": [s for _, s in part]}, schema=PATHS)


@dataclass
class LocalRun:
    """What one process's run of the workflow produced; its writer is still unpublished."""

    writer: IndexWriter
    journal: Journal
    hasher: OutputHasher
    skipped: list[SkippedItem]
    phases_s: dict[str, float]
    model_load_s: float
    total_s: float
    kept: list[pa.RecordBatch]  # the stored batches, kept only for an accuracy report


def job_of(config: IngestConfig, files: Sequence[tuple[str, str]], ranks: int = 1) -> dict[str, Any]:
    """The checkpoint header of this job: a checkpoint resumes only the job that wrote it."""
    return job_header(plan_fingerprint(config.workflow(ranks).compile()), config.resources(ranks), files)


def job_sha256(job: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()


def run_local(config: IngestConfig, files: Sequence[tuple[str, str]], *, ranks: int = 1,
              upsert_dir: str | None = None, work: Path | None = None, progress: bool | None = None,
              keep_digests: bool = False, before: Iterable[pa.RecordBatch] = ()) -> LocalRun:
    """Stream `files` through load -> chunk -> embed -> journal parts, then assemble an unpublished writer.

    The writer gets the rows of `before` (kept from an index being updated) ahead of the new ones.

    The checkpoint in `work` (default: beside the index) survives a failure or a kill so that
    `resume` finishes the job; it is removed by the caller once the index is published.
    """
    plan = config.workflow(ranks).compile()
    journal = Journal(work or work_dir_for(config.index_dir), job_of(config, files, ranks),
                      resume=config.resume, discard=config.overwrite)
    try:
        clear_stale(Path(upsert_dir or config.index_dir))
        t_setup = time.perf_counter()
        config.embedder()
        stages = checkpointed(bind(plan), journal)
        model_load_s = time.perf_counter() - t_setup
        with tqdm(total=0, initial=journal.rows, unit="chunk", desc="ingest",
                  disable=None if progress is None else not progress) as bar:

            def on_batch(stage: str, rows: int) -> None:
                if stage == "chunk":
                    bar.total += rows
                    bar.refresh()
                elif stage == "upsert":
                    bar.update(rows)

            t0 = time.perf_counter()
            with Executor(stages, backend=config.backend, queue_capacity=plan.resources.queue_capacity,
                          on_batch=on_batch) as ex:
                for _ in ex.run(path_batches(files, config.files_per_batch)):
                    pass
                skipped = list(ex.operators["load"].skipped)  # type: ignore[attr-defined]
                phases = {phase: round(ex.stats[name].busy_s, 4) for phase, name in PHASES.items()}
        hasher, kept = OutputHasher(keep=keep_digests), []

        def stored(batch: pa.RecordBatch) -> None:
            hasher.update(batch)
            if config.accuracy_report:
                kept.append(batch)

        writer = assemble(journal, Path(upsert_dir or config.index_dir), stored, before)
    except BaseException:
        if journal.parts:
            journal.close()  # keep what is committed: --resume continues from it
        else:
            journal.remove()
        raise
    return LocalRun(writer, journal, hasher, skipped, phases, round(model_load_s, 4),
                    round(time.perf_counter() - t0, 4), kept)


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


def ingest(config: IngestConfig, files: Sequence[tuple[str, str]] | None = None,
           skipped: Sequence[SkippedItem] = (), comm: Comm | None = None) -> IngestResult:
    """Run the ingest workflow; `files` (from `discover`) may be given to ingest exactly those.

    Under an MPI launcher (or with a `comm` of size N) each rank ingests its contiguous shard
    of the files and the index gets one FAISS shard per rank (see `ingest_ranks`); the result
    is returned on every rank. Progress is checkpointed beside the index (see `checkpoint`):
    with `config.resume` an interrupted run is finished instead of started again.
    """
    from aaflow_core.pipelines.discover import discover

    comm = comm if comm is not None else Comm.world()
    if comm.size > 1:
        from aaflow_core.pipelines.ingest_ranks import ingest_ranks

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
        from aaflow_core.pipelines.update import update

        return update(config, files, skipped)
    job = job_of(config, files)
    done = finished_job(config, job)
    if done is not None:
        return done
    check_checkpoint(work_dir_for(config.index_dir), resume=config.resume, discard=config.overwrite)
    check_target(Path(config.index_dir), config.overwrite or resumable(config))
    run = run_local(config, files, progress=config.progress)
    return publish_local(config, run, [*skipped, *run.skipped], job_sha256=job_sha256(job))


def publish_local(config: IngestConfig, run: LocalRun, skipped: list[SkippedItem], **extra: Any) -> IngestResult:
    """Publish a single-rank run with its manifest (plus `extra` fields); only then drop its checkpoint."""
    try:
        if not run.hasher.chunks:
            raise no_input(skipped)
        manifest = {**base_manifest(config, 1, run.hasher.summary(), skipped), "phases_s": run.phases_s,
                    "model_load_s": run.model_load_s, "total_s": run.total_s,
                    "resumed_parts": run.journal.recovered, **extra}
        if config.accuracy_report:
            manifest["accuracy"] = mode_accuracy(run.kept, config.embedder(), model=config.model, threads=config.threads,
                                                 batch_size=config.batch_size, queries=config.accuracy_queries)
        index_dir = run.writer.publish(manifest)
    except BaseException:
        run.writer.discard()
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
