"""The one run core (core.py): `run` calls the stores' sync methods, `arun` their async twins, as stock does."""
from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from llama_index.core import Document, MockEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.vector_stores import SimpleVectorStore

from aaflow_adapters.llamaindex import AAFlowIngestionPipeline
from aaflow_core.concurrency import drive

V1 = [Document(text=f"Document {k}. " + f"Sentence {k} has words. " * 12, doc_id=k) for k in ("a", "b", "c")]
V2 = [V1[0], Document(text="Document b was rewritten. " * 10, doc_id="b"), Document(text="New. " * 8, doc_id="d")]
DOCSTORE_API = {name for name in dir(SimpleDocumentStore) if not name.startswith("_")} - {"docs", "persist"}
ASYNC_API = {n for n in DOCSTORE_API if inspect.iscoroutinefunction(getattr(SimpleDocumentStore, n))} | {
    "async_add", "adelete"}


class RecordingDocstore(SimpleDocumentStore):
    """A real SimpleDocumentStore that records which of its methods the pipeline looks up."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: set[str] = set()

    def __getattribute__(self, name: str) -> Any:
        if name in DOCSTORE_API:
            object.__getattribute__(self, "calls").add(name)
        return super().__getattribute__(name)


class RecordingVectorStore(SimpleVectorStore):
    _calls: set[str] = PrivateAttr(default_factory=set)

    def add(self, nodes: Any, **kwargs: Any) -> list[str]:
        self._calls.add("add")
        return super().add(nodes, **kwargs)

    async def async_add(self, nodes: Any, **kwargs: Any) -> list[str]:
        self._calls.add("async_add")
        return await super().async_add(nodes, **kwargs)

    def delete(self, ref_doc_id: str, **kwargs: Any) -> None:
        self._calls.add("delete")
        super().delete(ref_doc_id, **kwargs)

    async def adelete(self, ref_doc_id: str, **kwargs: Any) -> None:
        self._calls.add("adelete")
        await super().adelete(ref_doc_id, **kwargs)


def store_calls(cls: type[IngestionPipeline], strategy: DocstoreStrategy, use_async: bool) -> set[str]:
    """The store methods two runs (V1, then V2: a changed, a new and an unchanged document) reach."""
    docstore, vector_store = RecordingDocstore(), RecordingVectorStore()
    pipeline = cls(transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=4), MockEmbedding(embed_dim=8)],
                   docstore=docstore, vector_store=vector_store, docstore_strategy=strategy)
    for docs in (V1, V2):
        if use_async:
            asyncio.run(pipeline.arun(documents=list(docs)))
        else:
            pipeline.run(documents=list(docs))
    return docstore.calls | vector_store._calls


@pytest.mark.parametrize("use_async", [False, True], ids=["run", "arun"])
@pytest.mark.parametrize("strategy", list(DocstoreStrategy))
def test_run_and_arun_call_the_stores_as_stock_does(strategy: DocstoreStrategy, use_async: bool) -> None:
    stock = store_calls(IngestionPipeline, strategy, use_async)
    ours = store_calls(AAFlowIngestionPipeline, strategy, use_async)
    assert ours == stock
    asynchronous = ours & ASYNC_API
    if use_async:
        assert {"async_add", "async_add_documents"} <= asynchronous
    else:
        assert not asynchronous and {"add", "add_documents"} <= ours


def test_drive_runs_a_coroutine_that_never_suspends_and_refuses_one_that_does() -> None:
    async def immediate() -> int:
        return 7

    async def suspends() -> int:
        await asyncio.sleep(0)
        return 7

    assert drive(immediate()) == 7
    with pytest.raises(RuntimeError, match="suspended"):
        drive(suspends())


@pytest.mark.parametrize("use_async", [False, True])
def test_the_collector_is_relaxed_during_a_run_and_restored_after(use_async: bool) -> None:
    import gc

    from llama_index.core.schema import TransformComponent

    from aaflow_core.remote.gcpolicy import RELAXED_GEN0

    seen: list[int] = []

    class Look(TransformComponent):
        def __call__(self, nodes, **kwargs):  # noqa: ANN001, ANN204 - TransformComponent's signature
            seen.append(gc.get_threshold()[0])
            return nodes

    before = gc.get_threshold()
    pipe = AAFlowIngestionPipeline(transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=0), Look()])
    out = asyncio.run(pipe.arun(documents=list(V1))) if use_async else pipe.run(documents=list(V1))
    assert out and seen and min(seen) >= RELAXED_GEN0
    assert gc.get_threshold() == before
