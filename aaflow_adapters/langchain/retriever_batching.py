"""Cross-input batching of retriever calls made inside an aaflow run (retriever tools in agents).

When many agents of one `batch` call a retriever tool (`create_retriever_tool`, or any tool that
awaits a FAISS `VectorStoreRetriever`), stock embeds and searches one query at a time. Here the
queries that arrive within `MAX_WAIT_MS` of each other (up to `MAX_BATCH`) are embedded with one
call and searched with one `index.search`; each caller gets exactly the documents its own query
finds (`retrieval.faiss_search`, the stock search's equal).

How: `install()` wraps `VectorStoreRetriever._aget_relevant_documents` once per process. The
wrapper acts only inside an aaflow run (`remote.active_gate()`), on that run's loop, for a retriever
`retrieval.batchable` accepts and a call without extra search kwargs; anything else runs stock's
code. The retriever's own `ainvoke` still opens and closes its run, so callback events are stock's.
Batches are cut by arrival time, so with a local model the last float bits of a query vector may
depend on which queries shared its batch (within 1e-6; see FRAMEWORKS.md, embedding numerics).
"""
from __future__ import annotations

import asyncio
import weakref
from typing import Any

from langchain_core.vectorstores import VectorStoreRetriever

from aaflow_core.concurrency import AsyncBatcher, BatchPolicy, RetryPolicy
from aaflow_adapters.langchain.remote import RemoteGate, active_gate
from aaflow_adapters.langchain.retrieval import batchable, embed_matrix, faiss_search

MAX_BATCH = 32
MAX_WAIT_MS = 5.0
_batchers: weakref.WeakKeyDictionary[RemoteGate, dict[int, AsyncBatcher[str, Any]]] = weakref.WeakKeyDictionary()
_installed = False


def _search_many(retriever: VectorStoreRetriever, queries: list[str]) -> list[list[Any]]:
    store = retriever.vectorstore
    matrix = embed_matrix(store.embedding_function, queries, query=True,  # type: ignore[attr-defined]
                          name=lambda j: f"query {queries[j]!r}")
    return faiss_search(store, matrix, **retriever.search_kwargs)


def _batcher(gate: RemoteGate, retriever: VectorStoreRetriever) -> AsyncBatcher[str, Any]:
    """One batcher per retriever per run, on the run's loop (created there on first use)."""
    per_run = _batchers.setdefault(gate, {})
    found = per_run.get(id(retriever))
    if found is None:
        async def search(queries: list[str]) -> list[list[Any]]:
            return await asyncio.get_running_loop().run_in_executor(None, _search_many, retriever, queries)

        found = per_run[id(retriever)] = AsyncBatcher(
            search, BatchPolicy(max_batch_size=MAX_BATCH, max_wait_ms=MAX_WAIT_MS, max_in_flight=2),
            RetryPolicy(attempts=1), describe=lambda q: f"query {q!r}")
    return found


def install() -> None:
    """Wrap `VectorStoreRetriever._aget_relevant_documents` once per process (a no-op outside aaflow)."""
    global _installed
    if _installed:
        return
    stock = VectorStoreRetriever._aget_relevant_documents

    async def _aget_relevant_documents(self: VectorStoreRetriever, query: str, *, run_manager: Any,
                                       **kwargs: Any) -> Any:
        gate = active_gate()
        if (gate is None or kwargs or not isinstance(query, str) or not batchable(self)
                or asyncio.get_running_loop() is not gate.loop):
            return await stock(self, query, run_manager=run_manager, **kwargs)
        return await _batcher(gate, self).submit(query)

    _aget_relevant_documents.__wrapped__ = stock  # type: ignore[attr-defined]
    VectorStoreRetriever._aget_relevant_documents = _aget_relevant_documents  # type: ignore[method-assign]
    _installed = True
