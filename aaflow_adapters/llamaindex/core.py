"""One run of `AAFlowIngestionPipeline`, written once: prepare, select, transform, write.

`run`, `arun` and the ranks path (mpi.py) compose these steps. Between `run` and `arun` only two
things differ: how the stores are called (stock's sync methods and handlers in `run`, their async
twins in `arun`, exactly as stock calls them) and where the transformations run (on this thread,
or on a worker thread with `acall` on the caller's loop). A `Calls` object says which; the steps
are coroutines over it. `SyncCalls` never suspends, so `run` drives the same coroutines to their
end on its own thread (`aaflow_core.concurrency.drive`), with no event loop.

The store calls go through stock's own `IngestionPipeline` handlers (`_handle_upserts`,
`_update_docstore`, ... and their async twins), so the writes are stock's; aaflow only moves
them after the transformations (docstore.py).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Optional, Protocol

from llama_index.core.ingestion.pipeline import DocstoreStrategy, IngestionPipeline
from llama_index.core.schema import BaseNode
from llama_index.core.storage.docstore import BaseDocumentStore
from llama_index.core.vector_stores.types import BasePydanticVectorStore

from aaflow_core.errors import AAFlowError

from aaflow_adapters.errors import user_error
from aaflow_adapters.llamaindex.docstore import HashedInput, duplicate_choice, ref_id, snapshot, upsert_choice
from aaflow_adapters.llamaindex.remote import UsageMeter
from aaflow_adapters.llamaindex.steps import RunCoro
from aaflow_adapters.llamaindex.transform import Outcome
from aaflow_adapters.llamaindex.vector import Segment, VectorWrite, add_nodes, check_write

Transformer = Callable[[Sequence[BaseNode], Optional[RunCoro]], Outcome]


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


class Calls(Protocol):
    """What differs between `run` and `arun`: the store calls, and where the transformations run."""

    async def document_hashes(self, refs: Iterable[str]) -> dict[str, Optional[str]]: ...

    async def all_document_hashes(self) -> dict[str, str]: ...

    async def commit_choice(self, nodes: Sequence[HashedInput], upserts: bool, store_doc_text: bool) -> None: ...

    async def add(self, nodes: list[BaseNode]) -> None: ...

    async def update_docstore(self, nodes: Sequence[BaseNode], strategy: DocstoreStrategy,
                              store_doc_text: bool) -> None: ...

    async def transform(self, work: Callable[[Optional[RunCoro]], Outcome]) -> Outcome: ...


class SyncCalls:
    """`run`'s calls: stock's sync store methods, the transformations on this thread (never suspends)."""

    def __init__(self, pipeline: IngestionPipeline) -> None:
        self.pipeline = pipeline

    async def document_hashes(self, refs: Iterable[str]) -> dict[str, Optional[str]]:
        return {r: self.pipeline.docstore.get_document_hash(r) for r in refs}

    async def all_document_hashes(self) -> dict[str, str]:
        return self.pipeline.docstore.get_all_document_hashes()

    async def commit_choice(self, nodes: Sequence[HashedInput], upserts: bool, store_doc_text: bool) -> None:
        if upserts:  # stock's handlers read id_, ref_doc_id and hash only
            self.pipeline._handle_upserts(nodes)  # type: ignore[arg-type]
        else:
            self.pipeline._handle_duplicates(nodes)  # type: ignore[arg-type]

    async def add(self, nodes: list[BaseNode]) -> None:
        self.pipeline.vector_store.add(nodes)

    async def update_docstore(self, nodes: Sequence[BaseNode], strategy: DocstoreStrategy,
                              store_doc_text: bool) -> None:
        self.pipeline._update_docstore(nodes, effective_strategy=strategy, store_doc_text=store_doc_text)

    async def transform(self, work: Callable[[Optional[RunCoro]], Outcome]) -> Outcome:
        return work(None)


class AsyncCalls:
    """`arun`'s calls: stock's async store methods; the transformations on a worker thread, their
    `acall` and the embeddings' async API on the caller's event loop."""

    def __init__(self, pipeline: IngestionPipeline) -> None:
        self.pipeline = pipeline

    async def document_hashes(self, refs: Iterable[str]) -> dict[str, Optional[str]]:
        return {r: await self.pipeline.docstore.aget_document_hash(r) for r in refs}

    async def all_document_hashes(self) -> dict[str, str]:
        return await self.pipeline.docstore.aget_all_document_hashes()

    async def commit_choice(self, nodes: Sequence[HashedInput], upserts: bool, store_doc_text: bool) -> None:
        if upserts:
            await self.pipeline._ahandle_upserts(nodes, store_doc_text=store_doc_text)  # type: ignore[arg-type]
        else:
            await self.pipeline._ahandle_duplicates(nodes, store_doc_text=store_doc_text)  # type: ignore[arg-type]

    async def add(self, nodes: list[BaseNode]) -> None:
        await self.pipeline.vector_store.async_add(nodes)

    async def update_docstore(self, nodes: Sequence[BaseNode], strategy: DocstoreStrategy,
                              store_doc_text: bool) -> None:
        await self.pipeline._aupdate_docstore(nodes, effective_strategy=strategy, store_doc_text=store_doc_text)

    async def transform(self, work: Callable[[Optional[RunCoro]], Outcome]) -> Outcome:
        loop = asyncio.get_running_loop()

        def on_loop(coro: Coroutine[Any, Any, Any]) -> Any:
            return asyncio.run_coroutine_threadsafe(coro, loop).result()

        return await asyncio.to_thread(work, on_loop)


@dataclass
class RunCore:
    """One run, from its prepared inputs (stock's order, checked) to its output nodes; `stats` as it goes."""

    inputs: Sequence[BaseNode]
    strategy: DocstoreStrategy  # the effective one for this run
    docstore: Optional[BaseDocumentStore]
    vector_store: Optional[BasePydanticVectorStore]
    store_doc_text: bool
    transformer: Transformer
    stats: RunStats
    started: float
    # what stock's handlers will read, taken before a transformation can edit the inputs in place
    hashed: list[HashedInput] = field(init=False)

    def __post_init__(self) -> None:
        self.hashed = snapshot(self.inputs)

    @property
    def upserts(self) -> bool:
        """Which of stock's docstore handlers applies (asked only with a docstore)."""
        if self.vector_store is not None and self.strategy in (DocstoreStrategy.UPSERTS,
                                                               DocstoreStrategy.UPSERTS_AND_DELETE):
            return True
        if self.strategy == DocstoreStrategy.DUPLICATES_ONLY or self.vector_store is None:
            return False
        raise ValueError(f"Invalid docstore strategy: {self.strategy}")

    async def select(self, calls: Calls) -> Sequence[BaseNode]:
        """Stock's docstore decisions by stock's rules, writing nothing yet (see docstore.py)."""
        if self.docstore is None:
            return self.inputs
        if self.upserts:
            return upsert_choice(self.inputs, await calls.document_hashes({ref_id(n) for n in self.inputs}))
        return duplicate_choice(self.inputs, await calls.all_document_hashes())

    def selected(self, nodes_in: int) -> None:
        """The run is prepared: `nodes_in` nodes go to this process's transformations."""
        self.stats.nodes_in, self.stats.prepare_s = nodes_in, time.perf_counter() - self.started

    def transform(self, nodes: Sequence[BaseNode], run_coro: Optional[RunCoro]) -> Outcome:
        outcome = self.transformer(nodes, run_coro)
        self.stats.cache_hits += outcome.cache_hits
        self.stats.stage_busy_s.update(outcome.stage_busy_s)
        return outcome

    async def write(self, calls: Calls, segments: Sequence[Segment], to_run: Sequence[BaseNode]) -> None:
        """Stock's writes, once nothing failed: the docstore decisions (recorded hashes, old versions
        deleted), the vector store, the docstore."""
        t0 = time.perf_counter()
        check_write(self.vector_store, segments)
        if self.docstore is not None:
            await calls.commit_choice(self.hashed, self.upserts, self.store_doc_text)
        if self.vector_store is not None:
            self.stats.vector_write = await add_nodes(self.vector_store, segments, calls.add)
        t1 = time.perf_counter()
        if self.docstore is not None:
            await calls.update_docstore(to_run, self.strategy, self.store_doc_text)
        self.stats.vector_store_s, self.stats.docstore_s = t1 - t0, time.perf_counter() - t1

    def finish(self, outcome: Outcome) -> Sequence[BaseNode]:
        nodes = outcome.nodes()
        if self.stats.meter is not None:
            self.stats.remote_usage, self.stats.meter = self.stats.meter.since(), None
        self.stats.nodes_out = len(nodes)
        self.stats.total_s = time.perf_counter() - self.started
        return nodes

    async def execute(self, calls: Calls) -> Sequence[BaseNode]:
        """The whole run in this process: select, transform, write."""
        to_run = await self.select(calls)
        self.selected(len(to_run))
        t0 = time.perf_counter()
        try:
            outcome = await calls.transform(partial(self.transform, to_run))
        except AAFlowError as err:
            raise user_error(err)
        self.stats.transform_s = time.perf_counter() - t0
        await self.write(calls, outcome.segments, to_run)
        return self.finish(outcome)

