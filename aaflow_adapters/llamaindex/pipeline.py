"""`AAFlowIngestionPipeline`: LlamaIndex's `IngestionPipeline`, run by aaflow.

Same constructor, same `run`/`arun` signatures, same inputs order, docstore strategies, cache
keys and vector-store contents; what changes is how the work is scheduled: document-local
transformations stream through aaflow's executor in batches cut at document boundaries, the
others are called once on the whole list as stock calls them (locality.py, transform.py;
threads, never a pickling process pool), embeddings go in micro-batches with calls overlapped
(length-sorted, but consecutive slices for models routed through aaflow's remote client, which
after a split-worker SentenceSplitter are requested before the nodes are built, embed_ahead.py),
and a `FaissVectorStore` receives whole Arrow embedding columns instead of one node at a time.
While a run is on, the garbage collector runs at a relaxed pace (`aaflow_core.remote.relaxed_gc`,
as LangChain's remote gate does). Bad input raises stock's exception type naming the item; a
failed run writes neither docstore nor vector store and keeps the cache entries of the finished
transformations (docs/reliability.md). Under `mpiexec`
(`ranks="auto"`) each rank transforms its contiguous shard of the inputs and every rank gets
all output nodes (see `mpi.py` and docs/distributed.md). The run itself is written once, in
core.py (prepare, select, transform, write): `run`, `arun` and `mpi.py` compose its steps.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import time
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, List, Optional, Union

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.ingestion.pipeline import DocstoreStrategy, IngestionPipeline
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.schema import BaseNode, Document

from aaflow_core.concurrency import drive
from aaflow_core.distributed import Comm
from aaflow_core.remote import relaxed_gc

from aaflow_adapters.errors import NotADocumentError, a_type
from aaflow_adapters.llamaindex.cache import StepCache
from aaflow_adapters.llamaindex.checkpoint import rank_dir
from aaflow_adapters.llamaindex.core import AsyncCalls, RunCore, RunStats, SyncCalls
from aaflow_adapters.llamaindex.engine import EngineOptions
from aaflow_adapters.llamaindex.mpi import run_on_ranks
from aaflow_adapters.llamaindex.remote import UsageMeter
from aaflow_adapters.llamaindex.splitpool import worker_count
from aaflow_adapters.llamaindex.steps import RunCoro
from aaflow_adapters.llamaindex.transform import Outcome, Run

dispatcher = get_dispatcher(__name__)


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
                stacklevel=5,  # the user's call of run/arun
            )
            return DocstoreStrategy.DUPLICATES_ONLY
        return self.docstore_strategy

    def _transform(self, nodes: Sequence[BaseNode], run_coro: Optional[RunCoro], *, cache_collection: Optional[str],
                   num_workers: Optional[int], show_progress: bool, kwargs: dict[str, Any]) -> Outcome:
        """Stock `run_transformations` semantics (cache included), as aaflow segments (transform.py).

        `num_workers > 1`: stock's partitions (`_node_batcher`), each transformed on its own as a
        stock worker process does, here on threads; so the outputs and cache keys are stock's.
        """
        cache = None if self.disable_cache else StepCache(self.cache, cache_collection)
        parts = self._partitions(nodes, num_workers)
        runs = [Run(list(self.transformations), cache, self._options(1 if len(parts) > 1 else num_workers), kwargs,
                    run_coro, show_progress and len(parts) == 1) for _ in parts]
        if len(parts) == 1:
            return runs[0](parts[0])
        with ThreadPoolExecutor(len(parts), thread_name_prefix="aaflow-partition") as pool:
            outcomes = list(pool.map(lambda run, part: run(part), runs, parts))
        return Outcome([seg for o in outcomes for seg in o.segments], cache_hits=sum(o.cache_hits for o in outcomes),
                       stage_busy_s={k: v for o in outcomes for k, v in o.stage_busy_s.items()})

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

    def _core(self, documents: Optional[Sequence[Document]], nodes: Optional[Sequence[BaseNode]], *,
              store_doc_text: bool, cache_collection: Optional[str], num_workers: Optional[int],
              show_progress: bool, kwargs: dict[str, Any]) -> RunCore:
        """Prepare a run (core.py): stock's inputs, checked, this run's docstore strategy, its transformations."""
        started, stats = time.perf_counter(), RunStats(meter=UsageMeter(self.transformations))
        inputs = self._prepare_inputs(documents, nodes)
        transform = partial(self._transform, cache_collection=cache_collection, num_workers=num_workers,
                            show_progress=show_progress, kwargs=kwargs)
        return RunCore(inputs, self._effective_strategy(), self.docstore, self.vector_store, store_doc_text,
                       transform, stats, started)

    @dispatcher.span
    def run(self, show_progress: bool = False, documents: Optional[List[Document]] = None,
            nodes: Optional[Sequence[BaseNode]] = None, cache_collection: Optional[str] = None,
            in_place: bool = True, store_doc_text: bool = True, num_workers: Optional[int] = None,
            **kwargs: Any) -> Sequence[BaseNode]:
        """As `IngestionPipeline.run`; `num_workers > 1` transforms stock's partitions on threads.

        Under MPI it is collective: each rank transforms its shard, rank 0 writes the stores (mpi.py).
        `in_place` is accepted for compatibility: aaflow never mutates the list it is given.
        """
        core = self._core(documents, nodes, store_doc_text=store_doc_text, cache_collection=cache_collection,
                          num_workers=num_workers, show_progress=show_progress, kwargs=kwargs)
        comm = Comm.for_ranks(self.ranks)
        with relaxed_gc():  # the run's nodes all live to its end: young collections would free nothing
            out = run_on_ranks(core, SyncCalls(self), comm) if comm.size > 1 else drive(core.execute(SyncCalls(self)))
        self._last_run = core.stats
        return out

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
        core = self._core(documents, nodes, store_doc_text=store_doc_text, cache_collection=cache_collection,
                          num_workers=num_workers, show_progress=show_progress, kwargs=kwargs)
        with relaxed_gc():
            out = await core.execute(AsyncCalls(self))
        self._last_run = core.stats
        return out
