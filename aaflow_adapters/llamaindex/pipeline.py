"""`AAFlowIngestionPipeline`: LlamaIndex's `IngestionPipeline`, run by aaflow.

Same constructor, same `run`/`arun` signatures, same inputs order, docstore strategies, cache
keys and vector-store contents; what changes is how the work is scheduled: document-local
transformations stream through aaflow's executor in batches cut at document boundaries, the
others are called once on the whole list as stock calls them (locality.py, transform.py;
threads, never a pickling process pool), embeddings go in length-sorted micro-batches with
calls overlapped, and a `FaissVectorStore` receives whole Arrow embedding columns instead of
one node at a time. Bad input raises stock's
exception type naming the item; a failed run writes neither docstore nor vector store and
keeps the cache entries of the finished transformations (docs/reliability.md). Under `mpiexec`
(`ranks="auto"`) each rank transforms its contiguous shard of the inputs and every rank gets
all output nodes (see `mpi.py` and docs/distributed.md).
"""
from __future__ import annotations

import asyncio
import multiprocessing
import time
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, List, Optional, Union

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.ingestion.pipeline import DocstoreStrategy, IngestionPipeline
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.schema import BaseNode, Document

from aaflow_core.distributed import Comm
from aaflow_core.errors import AAFlowError

from aaflow_adapters.errors import NotADocumentError, a_type, user_error
from aaflow_adapters.llamaindex.cache import StepCache
from aaflow_adapters.llamaindex.checkpoint import rank_dir
from aaflow_adapters.llamaindex.docstore import HashedInput, duplicate_choice, ref_id, snapshot, upsert_choice
from aaflow_adapters.llamaindex.engine import EngineOptions
from aaflow_adapters.llamaindex.mpi import run_on_ranks
from aaflow_adapters.llamaindex.remote import UsageMeter
from aaflow_adapters.llamaindex.splitpool import worker_count
from aaflow_adapters.llamaindex.steps import RunCoro
from aaflow_adapters.llamaindex.transform import Outcome, Run
from aaflow_adapters.llamaindex.vector import Segment, VectorWrite, aadd_nodes, add_nodes, check_write

dispatcher = get_dispatcher(__name__)


@dataclass
class RunStats:
    """What the last run did and where its time went (seconds; stage times are busy time)."""

    nodes_in: int = 0
    nodes_out: int = 0
    cache_hits: int = 0
    prepare_s: float = 0.0
    transform_s: float = 0.0
    vector_store_s: float = 0.0
    docstore_s: float = 0.0
    total_s: float = 0.0
    stage_busy_s: dict[str, float] = field(default_factory=dict)
    vector_write: VectorWrite = field(default_factory=VectorWrite)
    # per endpoint base URL, what the routed models sent during the run: requests, retries,
    # rejections (429), errors, failed items, prompt/completion tokens (aaflow_core.remote.Usage)
    remote_usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    meter: Optional[UsageMeter] = field(default=None, repr=False)


def _as_list(given: Optional[Iterable[Any]]) -> Optional[Sequence[Any]]:
    """Stock accepts any iterable (a reader's `lazy_load_data()`): read a one-shot iterator once, here."""
    return given if given is None or isinstance(given, Sequence) else list(given)


def _check_nodes(name: str, given: Sequence[Any]) -> None:
    """Stock fails on a non-node with an AttributeError that does not say which input it was."""
    for i, node in enumerate(given):
        if not isinstance(node, BaseNode):
            origin = "" if type(node).__module__ == "builtins" else f" from {type(node).__module__}"
            raise NotADocumentError(f"{name}[{i}]", f"is {a_type(node)}{origin}, not a LlamaIndex node "
                                                    "(Document, TextNode, ...)")


class AAFlowIngestionPipeline(IngestionPipeline):
    """Drop-in for `IngestionPipeline`; aaflow's options are extra keyword arguments."""

    parity: bool = Field(default=False, description="Embed in stock's embed_batch_size slices (bit-identical).")
    embed_batch_size: Optional[int] = Field(default=None, description="aaflow micro-batch size; None: the model's.")
    embed_concurrency: Optional[int] = Field(default=None, description="Embedding calls in flight; None: auto.")
    batch_chars: int = Field(default=100_000, description="Characters of input per streamed batch.")
    backend: str = Field(default="threads", description="aaflow executor backend: threads or serial.")
    ranks: Union[int, str] = Field(default="auto", description="MPI ranks: 'auto' = the mpiexec job, 1 = this process.")
    checkpoint: Optional[str] = Field(default=None, description="Directory: embeddings committed per micro-batch; "
                                      "a rerun after a crash embeds only the rest (checkpoint.py).")
    split_processes: Optional[int] = Field(default=None, description="SentenceSplitter worker processes "
                                           "(splitpool.py); None: one per CPU (none on one CPU), 0: split here.")
    _last_run: Optional[RunStats] = PrivateAttr(default=None)

    def __init__(self, *args: Any, parity: bool = False, embed_batch_size: Optional[int] = None,
                 embed_concurrency: Optional[int] = None, batch_chars: int = 100_000, backend: str = "threads",
                 ranks: Union[int, str] = "auto", checkpoint: Optional[str] = None,
                 split_processes: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        EngineOptions(parity, embed_batch_size, embed_concurrency, batch_chars, backend,
                      split_processes=split_processes)  # validate once
        self.split_processes = split_processes
        Comm.for_ranks(ranks)  # a bad value, or N ranks asked outside an N-rank job
        self.ranks = ranks
        self.parity, self.embed_batch_size, self.embed_concurrency = parity, embed_batch_size, embed_concurrency
        self.batch_chars, self.backend = batch_chars, backend

    @property
    def last_run(self) -> Optional[RunStats]:
        return self._last_run

    def _options(self, num_workers: Optional[int]) -> EngineOptions:
        return EngineOptions(self.parity, self.embed_batch_size, self.embed_concurrency, self.batch_chars,
                             self.backend, workers=max(1, num_workers or 1),
                             checkpoint=rank_dir(self.checkpoint, Comm.for_ranks(self.ranks)),
                             split_processes=self._split_processes())

    def _split_processes(self) -> Optional[int]:
        """Under MPI the ranks already share the CPUs: split workers only where each rank has 2 or more."""
        size = Comm.for_ranks(self.ranks).size
        if self.split_processes is not None or size == 1:
            return self.split_processes
        per_rank = worker_count() // size
        return per_rank if per_rank >= 2 else 0

    def _prepare_inputs(self, documents: Optional[Sequence[Document]],
                        nodes: Optional[Sequence[BaseNode]]) -> Sequence[BaseNode]:
        """Stock's input order, with every input checked to be a node before any work starts."""
        documents, nodes = _as_list(documents), _as_list(nodes)
        if self.documents is not None and not isinstance(self.documents, Sequence):
            self.documents = list(self.documents)
        for name, given in (("documents", documents), ("nodes", nodes), ("pipeline.documents", self.documents)):
            _check_nodes(name, given or [])
        inputs = super()._prepare_inputs(documents, nodes)
        _check_nodes("inputs", inputs)  # what the readers added
        return inputs

    def _effective_strategy(self) -> DocstoreStrategy:
        if (self.docstore is not None and self.vector_store is None
                and self.docstore_strategy in (DocstoreStrategy.UPSERTS, DocstoreStrategy.UPSERTS_AND_DELETE)):
            warnings.warn(
                f"docstore_strategy='{self.docstore_strategy.value}' requires a vector store "
                "to apply upsert/delete semantics; falling back to 'duplicates_only' for this run. "
                "pipeline.docstore_strategy is unchanged.",
                UserWarning,
                stacklevel=4,
            )
            return DocstoreStrategy.DUPLICATES_ONLY
        return self.docstore_strategy

    def _upserts(self, strategy: DocstoreStrategy) -> bool:
        """Which of stock's docstore handlers applies (None docstore: neither)."""
        if self.vector_store is not None and strategy in (DocstoreStrategy.UPSERTS, DocstoreStrategy.UPSERTS_AND_DELETE):
            return True
        if strategy == DocstoreStrategy.DUPLICATES_ONLY or self.vector_store is None:
            return False
        raise ValueError(f"Invalid docstore strategy: {strategy}")

    def _select(self, nodes: Sequence[BaseNode], strategy: DocstoreStrategy) -> Sequence[BaseNode]:
        """Stock's docstore decisions by stock's rules, writing nothing yet (see docstore.py)."""
        if self.docstore is None:
            return nodes
        if self._upserts(strategy):
            refs = {ref_id(n) for n in nodes}
            return upsert_choice(nodes, {r: self.docstore.get_document_hash(r) for r in refs})
        return duplicate_choice(nodes, self.docstore.get_all_document_hashes())

    async def _aselect(self, nodes: Sequence[BaseNode], strategy: DocstoreStrategy) -> Sequence[BaseNode]:
        if self.docstore is None:
            return nodes
        if self._upserts(strategy):
            refs = {ref_id(n) for n in nodes}
            return upsert_choice(nodes, {r: await self.docstore.aget_document_hash(r) for r in refs})
        return duplicate_choice(nodes, await self.docstore.aget_all_document_hashes())

    def _commit_choice(self, nodes: Sequence[HashedInput], strategy: DocstoreStrategy) -> None:
        """Stock's handlers, for their writes (recorded hashes, old versions deleted), once nothing failed."""
        if self.docstore is None:
            return
        if self._upserts(strategy):
            self._handle_upserts(nodes)  # type: ignore[arg-type]  # reads id_, ref_doc_id, hash only
        else:
            self._handle_duplicates(nodes)  # type: ignore[arg-type]

    async def _acommit_choice(self, nodes: Sequence[HashedInput], strategy: DocstoreStrategy,
                              store_doc_text: bool) -> None:
        if self.docstore is None:
            return
        if self._upserts(strategy):
            await self._ahandle_upserts(nodes, store_doc_text=store_doc_text)  # type: ignore[arg-type]
        else:
            await self._ahandle_duplicates(nodes, store_doc_text=store_doc_text)  # type: ignore[arg-type]

    def _transform(self, nodes: Sequence[BaseNode], stats: RunStats, *, cache_collection: Optional[str],
                   num_workers: Optional[int], show_progress: bool, run_coro: Optional[RunCoro],
                   kwargs: dict[str, Any]) -> Outcome:
        """Stock `run_transformations` semantics (cache included), as aaflow segments (transform.py).

        `num_workers > 1`: stock's partitions (`_node_batcher`), each transformed on its own as a
        stock worker process does, here on threads; so the outputs and cache keys are stock's.
        """
        cache = None if self.disable_cache else StepCache(self.cache, cache_collection)
        parts = self._partitions(nodes, num_workers)
        runs = [Run(list(self.transformations), cache, self._options(1 if len(parts) > 1 else num_workers), kwargs,
                    run_coro, show_progress and len(parts) == 1) for _ in parts]
        if len(parts) == 1:
            outcomes = [runs[0](parts[0])]
        else:
            with ThreadPoolExecutor(len(parts), thread_name_prefix="aaflow-partition") as pool:
                outcomes = list(pool.map(lambda run, part: run(part), runs, parts))
        for outcome in outcomes:
            stats.cache_hits += outcome.cache_hits
            stats.stage_busy_s.update(outcome.stage_busy_s)
        if len(outcomes) == 1:
            return outcomes[0]
        return Outcome([seg for o in outcomes for seg in o.segments])

    def _partitions(self, nodes: Sequence[BaseNode], num_workers: Optional[int]) -> list[Sequence[BaseNode]]:
        """Stock's split of the input for `num_workers > 1` (capped at the CPU count, with its warning)."""
        if not num_workers or num_workers <= 1:
            return [nodes]
        cpus = multiprocessing.cpu_count()
        if num_workers > cpus:
            warnings.warn("Specified num_workers exceed number of CPUs in the system. "
                          "Setting `num_workers` down to the maximum CPU count.", stacklevel=4)
            num_workers = cpus
        return list(self._node_batcher(num_batches=num_workers, nodes=nodes))

    def _stats(self) -> RunStats:
        return RunStats(meter=UsageMeter(self.transformations))

    def _finish(self, stats: RunStats, started: float, outcome: Outcome) -> Sequence[BaseNode]:
        nodes = outcome.nodes()
        if stats.meter is not None:
            stats.remote_usage, stats.meter = stats.meter.since(), None
        stats.nodes_out = len(nodes)
        stats.total_s = time.perf_counter() - started
        self._last_run = stats
        return nodes

    @dispatcher.span
    def run(self, show_progress: bool = False, documents: Optional[List[Document]] = None,
            nodes: Optional[Sequence[BaseNode]] = None, cache_collection: Optional[str] = None,
            in_place: bool = True, store_doc_text: bool = True, num_workers: Optional[int] = None,
            **kwargs: Any) -> Sequence[BaseNode]:
        """As `IngestionPipeline.run`; `num_workers > 1` transforms stock's partitions on threads.

        `in_place` is accepted for compatibility: aaflow never mutates the list it is given.
        """
        started, stats = time.perf_counter(), self._stats()
        comm = Comm.for_ranks(self.ranks)
        if comm.size > 1:  # collective: each rank transforms its shard; rank 0 writes the stores
            return run_on_ranks(self, comm, stats, documents=documents, nodes=nodes, store_doc_text=store_doc_text,
                                transform=lambda shard: self._transform(
                                    shard, stats, cache_collection=cache_collection, num_workers=num_workers,
                                    show_progress=show_progress, run_coro=None, kwargs=kwargs).segments)
        input_nodes = self._prepare_inputs(documents, nodes)
        strategy = self._effective_strategy()
        nodes_to_run = self._select(input_nodes, strategy)
        hashed = snapshot(input_nodes)  # before a transformation can edit the inputs in place
        stats.nodes_in = len(nodes_to_run)
        stats.prepare_s = time.perf_counter() - started
        t0 = time.perf_counter()
        try:
            outcome = self._transform(nodes_to_run, stats, cache_collection=cache_collection,
                                      num_workers=num_workers, show_progress=show_progress, run_coro=None,
                                      kwargs=kwargs)
        except AAFlowError as err:
            raise user_error(err)
        segments = outcome.segments
        stats.transform_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        check_write(self.vector_store, segments)
        self._commit_choice(hashed, strategy)
        if self.vector_store is not None:
            stats.vector_write = add_nodes(self.vector_store, segments)
        stats.vector_store_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        if self.docstore is not None:
            self._update_docstore(nodes_to_run, effective_strategy=strategy, store_doc_text=store_doc_text)
        stats.docstore_s = time.perf_counter() - t0
        return self._finish(stats, started, outcome)

    @dispatcher.span
    async def arun(self, show_progress: bool = False, documents: Optional[List[Document]] = None,
                   nodes: Optional[Sequence[BaseNode]] = None, cache_collection: Optional[str] = None,
                   in_place: bool = True, store_doc_text: bool = True, num_workers: Optional[int] = None,
                   **kwargs: Any) -> Sequence[BaseNode]:
        """As `IngestionPipeline.arun`: transformations' `acall` and the embeddings' async API run on
        this event loop, while aaflow's stages run on threads. Under MPI it runs `run` on a thread."""
        if Comm.for_ranks(self.ranks).size > 1:
            return await asyncio.to_thread(self.run, show_progress, documents, nodes, cache_collection, in_place,
                                           store_doc_text, num_workers, **kwargs)
        started, stats = time.perf_counter(), self._stats()
        input_nodes = self._prepare_inputs(documents, nodes)
        strategy = self._effective_strategy()
        nodes_to_run = await self._aselect(input_nodes, strategy)
        hashed = snapshot(input_nodes)
        stats.nodes_in = len(nodes_to_run)
        stats.prepare_s = time.perf_counter() - started
        loop = asyncio.get_running_loop()

        def on_loop(coro: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(coro, loop).result()

        t0 = time.perf_counter()
        try:
            outcome = await asyncio.to_thread(
                self._transform, nodes_to_run, stats, cache_collection=cache_collection, num_workers=num_workers,
                show_progress=show_progress, run_coro=on_loop, kwargs=kwargs)
        except AAFlowError as err:
            raise user_error(err)
        segments = outcome.segments
        stats.transform_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        check_write(self.vector_store, segments)
        await self._acommit_choice(hashed, strategy, store_doc_text)
        if self.vector_store is not None:
            stats.vector_write = await aadd_nodes(self.vector_store, segments)
        stats.vector_store_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        if self.docstore is not None:
            await self._aupdate_docstore(nodes_to_run, effective_strategy=strategy, store_doc_text=store_doc_text)
        stats.docstore_s = time.perf_counter() - t0
        return self._finish(stats, started, outcome)
