"""`aaflow_adapters.langchain.index`/`aindex` against `langchain_core.indexing.index`/`aindex`.

A sequence of runs (add, edit one source, drop one source, re-run unchanged) per cleanup mode:
the same IndexingResult, record-manager keys and groups, and vector-store contents.
"""
from __future__ import annotations

import asyncio
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from pydantic import Field
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.indexing import InMemoryRecordManager
from langchain_core.indexing import aindex as stock_aindex
from langchain_core.indexing import index as stock_index
from langchain_core.vectorstores import InMemoryVectorStore

from aaflow_adapters.langchain import aindex, index
from tests.adapters.langchain.test_ingest import empty_faiss

warnings.filterwarnings("ignore", message="Using SHA-1")
CLEANUPS = [None, "incremental", "full", "scoped_full"]


def corpus(version: int, *, drop: str | None = None) -> list[Document]:
    """Four sources of five chunks; version 1 rewrites two chunks of s1; `drop` leaves a source out."""
    docs = []
    for s in range(4):
        for c in range(5):
            edited = version and s == 1 and c in (1, 3)
            text = f"Source {s} chunk {c}: " + ("rewritten text about shells. " if edited else
                                              f"the json module decodes documents, part {s}.{c}. ")
            docs.append(Document(page_content=text, metadata={"source": f"s{s}", "chunk": c}))
    return [d for d in docs if d.metadata["source"] != drop]


RUNS = [corpus(0), corpus(1), corpus(1, drop="s2"), corpus(1, drop="s2")]


def faiss_state(store: Any) -> tuple[Any, np.ndarray]:
    ids = [store.index_to_docstore_id[i] for i in range(store.index.ntotal)]
    docs = [(i, store.docstore.search(i).page_content, store.docstore.search(i).metadata) for i in ids]
    return docs, store.index.reconstruct_n(0, store.index.ntotal)


def memory_state(store: Any) -> Any:
    return sorted((k, v["text"], tuple(sorted(v["metadata"].items())), tuple(v["vector"])) for k, v in store.store.items())


def records(rm: Any) -> Any:
    return sorted((key, group) for group in ("s0", "s1", "s2", "s3") for key in rm.list_keys(group_ids=[group]))


def next_tick(rm: Any) -> None:
    """Wait until the record manager's clock has moved past every time it has given out.

    `SQLRecordManager` on sqlite reads a millisecond clock: a run that starts in the millisecond of
    the previous run's last update finds those records not older than itself and leaves them out of
    its cleanup, stock as well (about one sequence in ten on `:memory:`), so the counts of two
    separately timed sequences would differ by timing alone. Each run starts on a fresh tick here.
    """
    seen = rm.get_time()
    while rm.get_time() <= seen:
        pass


async def anext_tick(rm: Any) -> None:
    seen = await rm.aget_time()
    while await rm.aget_time() <= seen:
        pass


def sequence(fn: Callable[..., Any], rm: Any, store: Any, cleanup: str | None, **kw: Any) -> list[Any]:
    results = []
    for docs in RUNS:
        next_tick(rm)
        results.append(fn(list(docs), rm, store, cleanup=cleanup, source_id_key="source", batch_size=6, **kw))
    return results


@pytest.mark.parametrize("cleanup", CLEANUPS)
def test_sequence_equals_stock_in_memory(cleanup: str | None) -> None:
    emb = DeterministicFakeEmbedding(size=8)
    stock_rm, ours_rm = InMemoryRecordManager("ns"), InMemoryRecordManager("ns")
    stock_vs, ours_vs = InMemoryVectorStore(emb), InMemoryVectorStore(emb)
    expected = sequence(stock_index, stock_rm, stock_vs, cleanup)
    assert sequence(index, ours_rm, ours_vs, cleanup) == expected
    assert sorted(ours_rm.records) == sorted(stock_rm.records)
    assert {k: v["group_id"] for k, v in ours_rm.records.items()} == {k: v["group_id"] for k, v in stock_rm.records.items()}
    assert memory_state(ours_vs) == memory_state(stock_vs)
    if cleanup in ("full", "incremental"):
        assert expected[2]["num_deleted"] > 0  # the dropped source was cleaned up


@pytest.mark.model
@pytest.mark.parametrize("cleanup", ["incremental"])  # every mode runs in the in-memory tests above
def test_sequence_equals_stock_faiss_huggingface_bits(cleanup: str | None, hf_embeddings: Any) -> None:
    stock_rm, ours_rm = InMemoryRecordManager("ns"), InMemoryRecordManager("ns")
    stock_vs, ours_vs = empty_faiss(hf_embeddings), empty_faiss(hf_embeddings)
    for docs in RUNS:
        kw = dict(cleanup=cleanup, source_id_key="source", batch_size=7)
        assert index(list(docs), ours_rm, ours_vs, **kw) == stock_index(list(docs), stock_rm, stock_vs, **kw)
        (stock_docs, stock_vecs), (our_docs, our_vecs) = faiss_state(stock_vs), faiss_state(ours_vs)
        assert our_docs == stock_docs
        assert np.array_equal(our_vecs, stock_vecs)  # same embed calls as add_documents: same bits
    assert sorted(ours_rm.records) == sorted(stock_rm.records)


def _sql(tmp_path: Path, name: str, *, asynchronous: bool = False) -> Any:
    sql = pytest.importorskip("langchain_classic.indexes")
    driver = "sqlite+aiosqlite" if asynchronous else "sqlite"
    rm = sql.SQLRecordManager("ns", db_url=f"{driver}:///{tmp_path / name}.db", async_mode=asynchronous)
    if not asynchronous:
        rm.create_schema()
    return rm


@pytest.mark.parametrize("cleanup", CLEANUPS)
def test_sequence_equals_stock_sql_record_manager(cleanup: str | None, tmp_path: Path) -> None:
    emb = DeterministicFakeEmbedding(size=8)
    stock_rm, ours_rm = _sql(tmp_path, "stock"), _sql(tmp_path, "ours")
    stock_vs, ours_vs = InMemoryVectorStore(emb), InMemoryVectorStore(emb)
    assert sequence(index, ours_rm, ours_vs, cleanup) == sequence(stock_index, stock_rm, stock_vs, cleanup)
    assert records(ours_rm) == records(stock_rm) and records(stock_rm)
    assert memory_state(ours_vs) == memory_state(stock_vs)


def test_sql_record_manager_in_memory_sqlite(tmp_path: Path) -> None:
    """sqlite :memory: gives each thread its own database: every record-manager call is on the caller's."""
    sql = pytest.importorskip("langchain_classic.indexes")
    emb = DeterministicFakeEmbedding(size=8)
    stock_rm, ours_rm = (sql.SQLRecordManager("ns", db_url="sqlite:///:memory:") for _ in range(2))
    stock_rm.create_schema()
    ours_rm.create_schema()
    stock_vs, ours_vs = InMemoryVectorStore(emb), InMemoryVectorStore(emb)
    assert sequence(index, ours_rm, ours_vs, "incremental") == sequence(stock_index, stock_rm, stock_vs, "incremental")
    assert records(ours_rm) == records(stock_rm)
    assert memory_state(ours_vs) == memory_state(stock_vs)


class Counting(DeterministicFakeEmbedding):
    """Keeps every text it embeds."""

    texts: list[str] = Field(default_factory=list)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.texts.extend(texts)
        return super().embed_documents(texts)


def test_sql_in_memory_sqlite_over_more_runs_than_its_pool_holds() -> None:
    """SQLAlchemy keeps one :memory: database per thread, five threads at most, then closes an arbitrary
    one (the caller's too, losing its records): with every call on the caller's thread, eight runs equal
    stock's, and the planner's read-ahead sees the caller's records, so it embeds exactly what stock does."""
    sql = pytest.importorskip("langchain_classic.indexes")
    stock_rm, ours_rm = (sql.SQLRecordManager("ns", db_url="sqlite:///:memory:") for _ in range(2))
    stock_vs, ours_vs = InMemoryVectorStore(Counting(size=8)), InMemoryVectorStore(Counting(size=8))
    for rm in (stock_rm, ours_rm):
        rm.create_schema()
    for docs in RUNS * 2:
        next_tick(stock_rm)
        next_tick(ours_rm)
        kw = dict(cleanup="full", source_id_key="source", batch_size=6)
        assert index(list(docs), ours_rm, ours_vs, **kw) == stock_index(list(docs), stock_rm, stock_vs, **kw)
    assert records(ours_rm) == records(stock_rm) and records(stock_rm)
    assert memory_state(ours_vs) == memory_state(stock_vs)
    assert sorted(ours_vs.embedding.texts) == sorted(stock_vs.embedding.texts)


class ThreadNoting(InMemoryRecordManager):
    """Notes the thread every record-manager method runs on, sync and async."""

    def __init__(self, namespace: str) -> None:
        super().__init__(namespace)
        self.threads: set[int] = set()


def _noting(name: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    def call(self: ThreadNoting, *args: Any, **kwargs: Any) -> Any:
        self.threads.add(threading.get_ident())
        return getattr(InMemoryRecordManager, name)(self, *args, **kwargs)

    async def acall(self: ThreadNoting, *args: Any, **kwargs: Any) -> Any:
        self.threads.add(threading.get_ident())
        return await getattr(InMemoryRecordManager, f"a{name}")(self, *args, **kwargs)

    return call, acall


for _name in ("get_time", "exists", "update", "list_keys", "delete_keys"):
    _sync, _async = _noting(_name)
    setattr(ThreadNoting, _name, _sync)
    setattr(ThreadNoting, f"a{_name}", _async)


@pytest.mark.parametrize("cleanup", ["incremental", "full"])
def test_every_record_manager_call_is_on_the_callers_thread(cleanup: str) -> None:
    emb = DeterministicFakeEmbedding(size=8)
    rm = ThreadNoting("ns")
    sequence(index, rm, InMemoryVectorStore(emb), cleanup)
    assert rm.threads == {threading.get_ident()}

    async def on_loop() -> int:
        arm, vs = ThreadNoting("ns"), InMemoryVectorStore(emb)
        for docs in RUNS:
            await aindex(list(docs), arm, vs, cleanup=cleanup, source_id_key="source", batch_size=6)
        assert arm.threads
        return len(arm.threads - {threading.get_ident()})

    assert asyncio.run(on_loop()) == 0


@pytest.mark.parametrize("cleanup", ["incremental", "scoped_full"])
def test_aindex_sequence_equals_stock(cleanup: str, tmp_path: Path) -> None:
    emb = DeterministicFakeEmbedding(size=8)

    async def docs_of(run: list[Document]) -> Any:  # an async iterator source, as aindex accepts
        for d in run:
            yield d

    async def both() -> tuple[Any, Any]:
        stock_rm, ours_rm = _sql(tmp_path, "stock", asynchronous=True), _sql(tmp_path, "ours", asynchronous=True)
        for rm in (stock_rm, ours_rm):
            await rm.acreate_schema()
        stock_vs, ours_vs = InMemoryVectorStore(emb), InMemoryVectorStore(emb)
        kw = dict(cleanup=cleanup, source_id_key="source", batch_size=6)
        stock, ours = [], []
        for r in RUNS:
            await anext_tick(stock_rm)
            stock.append(await stock_aindex(docs_of(r), stock_rm, stock_vs, **kw))
        for r in RUNS:
            await anext_tick(ours_rm)
            ours.append(await aindex(docs_of(r), ours_rm, ours_vs, **kw))
        keys = [sorted(await rm.alist_keys()) for rm in (stock_rm, ours_rm)]
        return (stock, keys[0], memory_state(stock_vs)), (ours, keys[1], memory_state(ours_vs))

    pytest.importorskip("aiosqlite")
    stock, ours = asyncio.run(both())
    assert ours == stock


def test_force_update_key_encoder_and_upsert_kwargs_as_stock() -> None:
    emb = DeterministicFakeEmbedding(size=8)
    for kw in ({"force_update": True}, {"key_encoder": "sha256"}, {"key_encoder": lambda d: d.page_content[:20]},
               {"upsert_kwargs": {"unused": 1}}):
        stock_rm, ours_rm = InMemoryRecordManager("ns"), InMemoryRecordManager("ns")
        stock_vs, ours_vs = InMemoryVectorStore(emb), InMemoryVectorStore(emb)
        for docs in RUNS[:2]:
            assert index(list(docs), ours_rm, ours_vs, cleanup="full", **kw) == \
                stock_index(list(docs), stock_rm, stock_vs, cleanup="full", **kw)
        assert sorted(ours_rm.records) == sorted(stock_rm.records)
        assert memory_state(ours_vs) == memory_state(stock_vs)


def test_bad_arguments_raise_stocks_errors() -> None:
    rm, vs = InMemoryRecordManager("ns"), InMemoryVectorStore(DeterministicFakeEmbedding(size=4))
    for kw, error in (({"cleanup": "partial"}, ValueError), ({"cleanup": "incremental"}, ValueError),
                      ({"batch_size": 0}, ValueError)):
        with pytest.raises(error) as stock:
            stock_index(RUNS[0], rm, vs, **kw)
        with pytest.raises(error, match=str(stock.value)[:40]):
            index(RUNS[0], rm, vs, **kw)
    with pytest.raises(TypeError):
        index(RUNS[0], rm, object())  # type: ignore[arg-type]


def test_a_failure_part_way_leaves_what_stock_leaves() -> None:
    """A loader that fails after two batches, and a document without a source id in the third."""
    emb = DeterministicFakeEmbedding(size=8)

    def failing() -> Any:
        yield from RUNS[0][:12]
        raise OSError("the loader lost its connection")

    unsourced = RUNS[0][:12] + [Document(page_content="no source")] + RUNS[0][12:]
    get = lambda d: d.metadata.get("source")  # noqa: E731
    for source, cleanup, key, error in ((failing, None, "source", OSError),
                                        (lambda: unsourced, "incremental", "source", KeyError),
                                        (lambda: unsourced, "scoped_full", get, ValueError)):
        states = []
        for fn in (stock_index, index):
            rm, vs = InMemoryRecordManager("ns"), InMemoryVectorStore(emb)
            with pytest.raises(error) as info:
                fn(source(), rm, vs, cleanup=cleanup, source_id_key=key, batch_size=6)
            states.append((str(info.value), sorted(rm.records), memory_state(vs)))
        assert states[1] == states[0] and states[0][1]  # the first two batches are in


class Meeting(DeterministicFakeEmbedding):
    """Embeds only when another batch's call is in flight too (a barrier of 2): proves the overlap."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        BARRIER.wait()
        return super().embed_documents(texts)


BARRIER = threading.Barrier(2, timeout=60)


def test_remote_style_embeddings_run_batches_side_by_side() -> None:
    stock_vs, ours_vs = InMemoryVectorStore(DeterministicFakeEmbedding(size=8)), InMemoryVectorStore(Meeting(size=8))
    docs = RUNS[0][:16]  # 4 batches of 4
    expected = stock_index(docs, InMemoryRecordManager("ns"), stock_vs, batch_size=4)
    assert index(docs, InMemoryRecordManager("ns"), ours_vs, batch_size=4, embed_workers=2) == expected
    assert memory_state(ours_vs) == memory_state(stock_vs)


@pytest.mark.parametrize("ours, stock", [(index, stock_index), (aindex, stock_aindex)])
def test_signature_is_stocks_plus_one_option(ours: Any, stock: Any) -> None:
    import inspect

    mine, theirs = inspect.signature(ours).parameters, inspect.signature(stock).parameters
    assert [(p.name, p.kind, p.default) for p in theirs.values()] == \
        [(p.name, p.kind, p.default) for p in list(mine.values())[:len(theirs)]]
    assert list(mine)[len(theirs):] == ["embed_workers"]
