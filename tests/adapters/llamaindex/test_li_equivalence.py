"""Stock `IngestionPipeline` and `AAFlowIngestionPipeline` side by side on the same documents."""
from __future__ import annotations

import asyncio
from typing import Any, Sequence

import faiss
import numpy as np
import pytest
from li_support import assert_same_nodes, corpus_docs, hf_model, stable_id
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter, TokenTextSplitter
from llama_index.core.schema import BaseNode, TransformComponent
from llama_index.core.vector_stores.types import VectorStoreQuery
from llama_index.vector_stores.faiss import FaissVectorStore

from aaflow_adapters.llamaindex import AAFlowIngestionPipeline

pytestmark = pytest.mark.model
QUERIES = ("How do I decode a JSON document?", "split a shell command line", "match file names with wildcards")


class RecordingIndex(faiss.IndexFlatL2):
    """A real FAISS index that also records the address of every array handed to `add`."""

    added: list[int] = []  # declared on the class: faiss refuses unknown instance attributes

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.added: list[int] = []

    def add(self, x: np.ndarray) -> None:
        self.added.append(int(x.__array_interface__["data"][0]))
        super().add(x)


class Shout(TransformComponent):
    """A user component: upper-cases text and counts the nodes it has seen in metadata."""

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        for node in nodes:
            node.set_content(node.get_content().upper())
            node.metadata["shout_len"] = len(node.get_content())
        return nodes

    async def acall(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        await asyncio.sleep(0)
        return self(nodes, **kwargs)


def splitter() -> SentenceSplitter:
    return SentenceSplitter(chunk_size=128, chunk_overlap=16, id_func=stable_id)


def top_k(store: FaissVectorStore) -> list[list[str]]:
    model = hf_model()
    return [store.query(VectorStoreQuery(query_embedding=model.get_query_embedding(q), similarity_top_k=5)).ids
            for q in QUERIES]


def test_sentence_splitter_hf_faiss_same_nodes_and_top_k(small_corpus):
    docs = corpus_docs(small_corpus)
    stock_store = FaissVectorStore(faiss_index=faiss.IndexFlatL2(384))
    ours_store = FaissVectorStore(faiss_index=RecordingIndex(384))
    stock = IngestionPipeline(transformations=[splitter(), hf_model()], vector_store=stock_store).run(documents=docs)
    pipe = AAFlowIngestionPipeline(transformations=[splitter(), hf_model()], vector_store=ours_store,
                                   batch_chars=4000)
    ours = pipe.run(documents=docs)
    assert len(ours) > 20
    assert_same_nodes(stock, ours)
    assert ours_store.client.ntotal == stock_store.client.ntotal == len(ours)
    stored = ours_store.client.reconstruct_n(0, len(ours))
    assert np.abs(stored - stock_store.client.reconstruct_n(0, len(ours))).max() <= 1e-5
    assert top_k(ours_store) == top_k(stock_store)
    # FAISS got the Arrow embedding columns themselves, in a few bulk calls, never one node at a time
    write = pipe.last_run.vector_write
    assert write.nodes == len(ours) and write.calls == len(ours_store.client.added) < len(ours)
    assert ours_store.client.added == write.shared_buffers


def test_parity_mode_is_bit_identical_to_stock(small_corpus):
    docs = corpus_docs(small_corpus, chars=2500)
    stock = IngestionPipeline(transformations=[splitter(), hf_model()]).run(documents=docs)
    ours = AAFlowIngestionPipeline(transformations=[splitter(), hf_model()], parity=True,
                                   batch_chars=1500).run(documents=docs)
    assert_same_nodes(stock, ours, exact=True)


@pytest.mark.parametrize("backend,workers", [("threads", None), ("threads", 2), ("serial", None)])
def test_token_splitter_and_custom_component(small_corpus, backend, workers):
    docs = corpus_docs(small_corpus, chars=20000)
    steps = lambda: [TokenTextSplitter(chunk_size=64, chunk_overlap=8, id_func=stable_id), Shout()]  # noqa: E731
    stock = IngestionPipeline(transformations=steps()).run(documents=docs)
    ours = AAFlowIngestionPipeline(transformations=steps(), batch_chars=3000, backend=backend).run(
        documents=docs, num_workers=workers)
    assert len(ours) > 40 and ours[0].get_content().isupper()
    assert_same_nodes(stock, ours)


def test_default_ids_are_fresh_but_everything_else_matches(small_corpus):
    docs = corpus_docs(small_corpus, chars=3000)
    stock = IngestionPipeline(transformations=[SentenceSplitter(chunk_size=128, chunk_overlap=16)]).run(documents=docs)
    ours = AAFlowIngestionPipeline(transformations=[SentenceSplitter(chunk_size=128, chunk_overlap=16)]).run(
        documents=docs)
    assert_same_nodes(stock, ours, ids=False)
    assert {n.node_id for n in ours}.isdisjoint(n.node_id for n in stock)


def test_arun_matches_stock_arun(small_corpus):
    docs = corpus_docs(small_corpus, chars=2500)
    steps = lambda: [splitter(), Shout(), hf_model()]  # noqa: E731
    stock = asyncio.run(IngestionPipeline(transformations=steps()).arun(documents=docs))
    ours = asyncio.run(AAFlowIngestionPipeline(transformations=steps(), batch_chars=2000).arun(documents=docs))
    assert ours[0].metadata["shout_len"] > 0
    assert_same_nodes(stock, ours)
