"""SentenceSplitter's splitting in worker processes: stock's nodes exactly, and stock's errors.

The workers are real subprocesses speaking Arrow IPC; the tests wait for them to be ready so
that every text below is split by a worker (or, where a worker cannot, here, as stock does).
"""
from __future__ import annotations

import logging

import pytest
from li_support import assert_same_nodes, stable_id
from llama_index.core import Document
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter

from aaflow_adapters.llamaindex import AAFlowIngestionPipeline, start_split_workers
from aaflow_adapters.llamaindex import splitpool

TEXT = ("Dr. Smith went to Washington. He arrived at 3 p.m. and left soon after!\n\n"
        "A second paragraph, with commas; semicolons: and more. " * 6 + "\n\n\n") * 4
DOCS = [Document(text=TEXT[i * 37:] + f" Document {i} ends here.", doc_id=f"s{i}",
                 metadata={"file_name": f"s{i}.txt", "topic": "x" * (i * 5)}) for i in range(8)]


@pytest.fixture(scope="module", autouse=True)
def workers():
    assert start_split_workers(2) == 2


def splitter(**kwargs) -> SentenceSplitter:
    return SentenceSplitter(chunk_size=kwargs.pop("chunk_size", 64), chunk_overlap=8, id_func=stable_id, **kwargs)


def test_workers_split_and_the_nodes_are_stocks(monkeypatch):
    sent: list[int] = []
    original = splitpool._Worker.send
    monkeypatch.setattr(splitpool._Worker, "send", lambda self, c, t, m: sent.append(len(t)) or original(self, c, t, m))
    stock = IngestionPipeline(transformations=[splitter()]).run(documents=list(DOCS))
    ours = AAFlowIngestionPipeline(transformations=[splitter()], split_processes=2, batch_chars=1500).run(
        documents=list(DOCS))
    assert_same_nodes(stock, ours)
    assert [n.start_char_idx for n in ours] == [n.start_char_idx for n in stock]
    assert sum(sent) == len(DOCS)  # every document went to a worker


def test_default_ids_and_metadata_mode_follow_stock():
    kwargs = {"include_metadata": False, "paragraph_separator": "\n\n"}
    stock = IngestionPipeline(transformations=[splitter(**kwargs)]).run(documents=list(DOCS))
    ours = AAFlowIngestionPipeline(transformations=[splitter(**kwargs)], split_processes=2).run(documents=list(DOCS))
    assert_same_nodes(stock, ours)
    plain = IngestionPipeline(transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=8)]).run(
        documents=list(DOCS))
    random_ids = AAFlowIngestionPipeline(transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=8)],
                                         split_processes=2).run(documents=list(DOCS))
    assert_same_nodes(plain, random_ids, ids=False)  # uuid4 ids, as stock's default id_func makes them


def test_a_text_a_worker_cannot_split_raises_stocks_error():
    long_meta = [Document(text="Short text.", doc_id="m", metadata={"k": "word " * 80})]
    with pytest.raises(ValueError) as stock:
        IngestionPipeline(transformations=[splitter()]).run(documents=long_meta)
    with pytest.raises(ValueError) as ours:
        AAFlowIngestionPipeline(transformations=[splitter()], split_processes=2).run(documents=long_meta)
    assert str(ours.value) == str(stock.value)


def test_a_custom_tokenizer_splits_here(caplog):
    words = splitter(tokenizer=str.split)
    with caplog.at_level(logging.DEBUG, logger="aaflow_adapters.llamaindex.splitpool"):
        ours = AAFlowIngestionPipeline(transformations=[words], split_processes=2).run(documents=list(DOCS))
    assert "a custom tokenizer" in caplog.text
    assert_same_nodes(IngestionPipeline(transformations=[splitter(tokenizer=str.split)]).run(documents=list(DOCS)),
                      ours)


def test_chunking_events_are_stocks():
    from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler

    def chunking(cls: type, **opts) -> list[tuple[list[str], list[str]]]:
        handler = LlamaDebugHandler()
        cls(transformations=[splitter(callback_manager=CallbackManager([handler]))], **opts).run(documents=list(DOCS))
        return [(start.payload["chunks"], end.payload["chunks"]) for start, end in
                handler.get_event_pairs(CBEventType.CHUNKING)]

    stock = chunking(IngestionPipeline)
    ours = chunking(AAFlowIngestionPipeline, split_processes=2)  # split by the workers
    assert stock and sorted(ours) == sorted(stock)  # batches may build their nodes on two threads
