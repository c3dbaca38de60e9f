"""What an ingest run is given (`IngestConfig`, validated once) and what it returns (`IngestResult`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aaflow_core.errors import ConfigError, SkippedItem
from aaflow_core.models.auto import choose_mode
from aaflow_core.models.embedding import Embedder
from aaflow_core.models.modes import AUTO, check_request
from aaflow_core.operators.embed import shared_embedder
from aaflow_core.plan import Resources, Workflow, default_threads, specs
from aaflow_core.remote.embedder import EndpointEmbedder, endpoint_embedder


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
    executor: str = "threads"  # the executor's backend: serial|threads (runtime.EXECUTOR_BACKENDS)
    progress: bool | None = None
    precision: str = "fp32"  # embedding mode: fp32|bf16|int8, or auto (see aaflow_core.models.modes)
    embed_backend: str = "torch"  # torch|onnx|openvino, or auto (models.ENGINES)
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
                "files_per_batch": self.files_per_batch, "backend": self.executor}  # the manifest key stays

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
