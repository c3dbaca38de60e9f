"""Docstore strategies, the ingestion cache, persist/load, inputs and errors: stock vs aaflow."""
from __future__ import annotations

import asyncio
from typing import Any, Sequence

import pytest
from li_support import assert_same_nodes, hf_model, stable_id
from llama_index.core import Document
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
from llama_index.core.ingestion.pipeline import get_transformation_hash
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.readers import ReaderConfig, StringIterableReader
from llama_index.core.schema import BaseNode, NodeRelationship, RelatedNodeInfo, TextNode, TransformComponent
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.vector_stores import SimpleVectorStore

from aaflow_adapters.llamaindex import AAFlowIngestionPipeline
from aaflow_adapters.llamaindex.cache import StepRecord

V1 = [Document(text=f"Document {k}. " + f"Sentence {k} has words. " * 12, doc_id=k, metadata={"v": 1})
      for k in ("a", "b", "c")]
V2 = [V1[0], Document(text="Document b was rewritten. " * 10, doc_id="b", metadata={"v": 2}),
      Document(text="Document d is new. " * 8, doc_id="d")]


def split() -> SentenceSplitter:
    return SentenceSplitter(chunk_size=32, chunk_overlap=4, id_func=stable_id)


def other_id(i: int, doc: BaseNode) -> str:
    return f"{doc.node_id}@{i}"


def pair(**kw: Any) -> tuple[IngestionPipeline, AAFlowIngestionPipeline]:
    make = lambda cls: cls(**{k: (v() if callable(v) else v) for k, v in kw.items()})  # noqa: E731
    return make(IngestionPipeline), make(AAFlowIngestionPipeline)


def store_state(p: IngestionPipeline) -> tuple[Any, ...]:
    vs = p.vector_store.data if p.vector_store is not None else None
    return (p.docstore.get_all_document_hashes(), sorted(p.docstore.docs),
            vs and sorted(vs.embedding_dict), vs and vs.text_id_to_ref_doc_id)


@pytest.mark.model
@pytest.mark.parametrize("strategy", list(DocstoreStrategy))
def test_docstore_strategies_make_the_same_decisions(strategy):
    stock, ours = pair(transformations=lambda: [split(), hf_model()], docstore=SimpleDocumentStore,
                       vector_store=SimpleVectorStore, docstore_strategy=strategy)
    for docs in (V1, V2, V2):
        expected = stock.run(documents=list(docs))
        got = ours.run(documents=list(docs))
        assert_same_nodes(expected, got)
        assert store_state(ours) == store_state(stock)
    assert not got  # the third run changes nothing


def test_duplicates_only_without_vector_store_warns_and_dedups():
    stock, ours = pair(transformations=lambda: [split()], docstore=SimpleDocumentStore,
                       docstore_strategy=DocstoreStrategy.UPSERTS)
    for docs in (V1 + [V1[0]], V2):
        with pytest.warns(UserWarning, match="requires a vector store"):
            expected = stock.run(documents=list(docs))
        with pytest.warns(UserWarning, match="requires a vector store"):
            got = ours.run(documents=list(docs))
        assert_same_nodes(expected, got)
        assert store_state(ours) == store_state(stock)
    assert ours.docstore_strategy is DocstoreStrategy.UPSERTS


def test_upserts_keep_all_nodes_of_a_document_with_no_transformations():
    def nodes() -> list[TextNode]:
        out = [TextNode(text=f"chunk {i}", id_=f"node-{i}") for i in range(5)]
        for n in out:
            n.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id="source-doc")
        return out

    stock, ours = pair(transformations=list, docstore=SimpleDocumentStore, vector_store=SimpleVectorStore)
    assert_same_nodes(stock.run(nodes=nodes()), ours.run(nodes=nodes()))
    assert_same_nodes(asyncio.run(stock.arun(nodes=nodes())), asyncio.run(ours.arun(nodes=nodes())))
    assert store_state(ours) == store_state(stock) and len(ours.docstore.docs) == 5


def test_inputs_keep_stock_order():
    reader = ReaderConfig(reader=StringIterableReader(), reader_kwargs={"texts": ["From the reader. " * 5]})
    own = [Document(text="Pipeline's own document. " * 5, doc_id="own")]
    stock, ours = pair(transformations=lambda: [split()], documents=own, readers=[reader])
    extra = [TextNode(text="A loose node. " * 5, id_="loose")]
    expected = stock.run(documents=list(V1), nodes=list(extra))
    got = ours.run(documents=list(V1), nodes=list(extra))
    assert_same_nodes(expected, got, ids=False)
    assert [n.ref_doc_id for n in got][:3] == ["a", "a", "a"] and got[-1].ref_doc_id not in {"a", "b", "c", "own"}


@pytest.mark.model
def test_cache_keys_and_entries_serve_both_pipelines():
    docs = V1 + V2[1:]
    stock, ours = pair(transformations=lambda: [split(), hf_model()])
    expected, got = stock.run(documents=list(docs)), ours.run(documents=list(docs))
    assert_same_nodes(expected, got)
    col = stock.cache.collection
    stock_entries, our_entries = stock.cache.cache.get_all(collection=col), ours.cache.cache.get_all(collection=col)
    assert sorted(our_entries) == sorted(stock_entries) and len(our_entries) == 2
    split_key = get_transformation_hash(docs, split())
    assert our_entries[split_key] == stock_entries[split_key]
    # each pipeline now runs from the other's cache: every step is a hit and returns copies
    stock.cache, ours.cache = ours.cache, stock.cache
    assert_same_nodes(got, stock.run(documents=list(docs)), exact=True)
    from_cache = ours.run(documents=list(docs))
    assert ours.last_run.cache_hits == 2
    assert_same_nodes(expected, from_cache, exact=True)
    assert from_cache[0] is not expected[0]


@pytest.mark.model
def test_cache_hit_after_a_miss_resumes_like_stock():
    first = [lambda: SentenceSplitter(chunk_size=32, chunk_overlap=4, id_func=stable_id), hf_model]
    second = [lambda: SentenceSplitter(chunk_size=32, chunk_overlap=4, id_func=other_id), hf_model]
    stock, ours = pair(transformations=lambda: [f() for f in first])
    stock.run(documents=list(V1))
    ours.run(documents=list(V1))
    stock.transformations = ours.transformations = [f() for f in second]
    expected, got = stock.run(documents=list(V1)), ours.run(documents=list(V1))
    assert expected[0].node_id == "a#0"  # the embedding step's entry from the first run wins
    assert_same_nodes(expected, got, exact=True)
    assert ours.last_run.cache_hits == 1


def test_disable_cache_and_cache_collection():
    stock, ours = pair(transformations=lambda: [split()], disable_cache=True)
    assert_same_nodes(stock.run(documents=list(V1)), ours.run(documents=list(V1)))
    assert ours.cache.cache.get_all(collection=ours.cache.collection) == {}
    ours.disable_cache = False
    ours.run(documents=list(V1), cache_collection="mine")
    assert len(ours.cache.cache.get_all(collection="mine")) == 1


def test_persist_and_load_interoperate_with_stock(tmp_path):
    stock, ours = pair(transformations=lambda: [split()], docstore=SimpleDocumentStore,
                       docstore_strategy=DocstoreStrategy.DUPLICATES_ONLY)
    assert len(ours.run(documents=list(V1))) > 3
    ours.persist(str(tmp_path / "ours"))
    stock.load(str(tmp_path / "ours"))
    assert stock.run(documents=list(V1)) == []
    assert len(stock.run(documents=list(V2))) > 0
    stock.persist(str(tmp_path / "stock"))
    fresh = AAFlowIngestionPipeline(transformations=[split()], docstore_strategy=DocstoreStrategy.DUPLICATES_ONLY)
    fresh.load(str(tmp_path / "stock"))
    assert fresh.run(documents=list(V2)) == [] and sorted(fresh.docstore.docs) == sorted(stock.docstore.docs)


class Raising(TransformComponent):
    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        raise RuntimeError("boom")


def test_transform_error_keeps_its_type_and_names_the_step():
    pipe = AAFlowIngestionPipeline(transformations=[split(), Raising()], docstore=SimpleDocumentStore(),
                                   docstore_strategy=DocstoreStrategy.DUPLICATES_ONLY)
    with pytest.raises(RuntimeError, match="boom") as info:
        pipe.run(documents=[Document(text="Some text. " * 20, doc_id="1")])
    assert any("transformations[1] (Raising)" in note and "of 1" in note for note in info.value.__notes__)
    assert pipe.docstore.get_node("1", raise_error=False) is None
    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(pipe.arun(documents=[Document(text="Other text. " * 20, doc_id="2")]))


def test_streamed_cache_key_equals_stock_hash():
    nodes = split()(list(V1 + V2[1:]))
    record = StepRecord(split())
    for start in range(0, len(nodes), 3):
        record.hash_inputs(nodes[start:start + 3])
    assert record.final_key() == get_transformation_hash(nodes, split())
