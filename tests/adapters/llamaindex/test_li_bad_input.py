"""Bad input to AAFlowIngestionPipeline: stock's exception type (or a subclass), a message naming the
item, stock's acceptance where stock accepts, and nothing already done lost: the cache entries of the
steps that finished (as stock), and no docstore or vector store write before the transformations succeed."""
from __future__ import annotations

import asyncio
import re
from typing import Any, Sequence

import pytest
from li_support import assert_same_nodes, stable_id
from llama_index.core import Document
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.ingestion import DocstoreStrategy, IngestionCache, IngestionPipeline
from llama_index.core.ingestion.pipeline import get_transformation_hash
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import BaseNode, TextNode, TransformComponent
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.vector_stores import SimpleVectorStore

from aaflow_adapters.errors import EmbeddingDimError, EmbeddingOutputError, NotADocumentError, StepOutputError
from aaflow_adapters.llamaindex import AAFlowIngestionPipeline

DOCS = [Document(text=f"Document {k} opens here. " + f"Sentence {k} has a few words. " * 6, doc_id=f"doc{k}")
        for k in range(4)]


def split() -> SentenceSplitter:
    return SentenceSplitter(chunk_size=32, chunk_overlap=0, id_func=stable_id)


def stock_error(fn: Any) -> BaseException:
    with pytest.raises(Exception) as info:
        fn()
    return info.value


def both(transformations: Any, **kw: Any) -> tuple[IngestionPipeline, AAFlowIngestionPipeline]:
    """The stock pipeline and aaflow's, each with its own fresh components and stores."""
    fresh = {k: v() for k, v in kw.items()}
    stock = IngestionPipeline(transformations=transformations(), **fresh)
    fresh = {k: v() for k, v in kw.items()}
    return stock, AAFlowIngestionPipeline(transformations=transformations(), batch_chars=200, **fresh)


# --- inputs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("argument", ["documents", "nodes"])
@pytest.mark.parametrize("bad", ["plain text", None, {"text": "x"}], ids=["str", "None", "dict"])
def test_an_input_that_is_not_a_node_is_named(argument: str, bad: Any) -> None:
    stock, ours = both(lambda: [split()], docstore=SimpleDocumentStore)
    inputs = [DOCS[0], bad]
    error = stock_error(lambda: stock.run(**{argument: inputs}))
    with pytest.raises(type(error), match=rf"^{argument}\[1\]: is {'None' if bad is None else 'a '}") as info:
        ours.run(**{argument: inputs})
    assert isinstance(info.value, NotADocumentError)
    assert ours.docstore.docs == stock.docstore.docs == {}  # both fail before writing anything


def test_a_langchain_document_is_named_by_its_module() -> None:
    from langchain_core.documents import Document as LangChainDocument

    with pytest.raises(AttributeError, match=r"documents\[0\]: is a Document from langchain_core"):
        AAFlowIngestionPipeline(transformations=[split()]).run(documents=[LangChainDocument(page_content="x")])


def test_a_component_that_is_not_a_transformation_is_refused_as_stock_refuses_it() -> None:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    for bad in (lambda nodes: nodes, RecursiveCharacterTextSplitter(), None):
        stock = stock_error(lambda: IngestionPipeline(transformations=[split(), bad]))
        ours = stock_error(lambda: AAFlowIngestionPipeline(transformations=[split(), bad]))
        assert type(ours) is type(stock)
        assert [(e["loc"], e["type"]) for e in ours.errors()] == [(e["loc"], e["type"]) for e in stock.errors()]
        assert "transformations.1" in str(ours)


# --- transformations that return the wrong thing ---------------------------------------------

class Returns(TransformComponent):
    """A transformation that hands back something other than a list of nodes."""

    what: str

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Any:
        return {
            "texts": lambda: [n.get_content() for n in nodes], "none": lambda: None, "one node": lambda: nodes[0],
            "dict": lambda: {n.node_id: n for n in nodes}, "a None": lambda: [*nodes, None],
            "tuple": lambda: tuple(nodes),
        }[self.what]()


@pytest.mark.parametrize("what, message", [
    ("texts", r"returned a str at position 0"), ("none", r"returned None;"), ("one node", r"returned a TextNode;"),
    ("dict", r"returned a dict;"), ("a None", r"returned None at position \d+"),
])
def test_a_transformation_returning_the_wrong_type_is_named(what: str, message: str) -> None:
    stock, ours = both(lambda: [split(), Returns(what=what), MockEmbedding(embed_dim=4)])
    error = stock_error(lambda: stock.run(documents=list(DOCS)))
    named = rf"transformations\[1\] \(Returns\) on the nodes of doc0.*: {message}"
    with pytest.raises(type(error), match=named) as info:
        ours.run(documents=list(DOCS))
    assert isinstance(info.value, StepOutputError)
    with pytest.raises(type(error), match=message):  # the async path checks the same
        asyncio.run(ours.arun(documents=list(DOCS)))


def test_a_tuple_of_nodes_is_accepted_as_stock_accepts_it() -> None:
    stock, ours = both(lambda: [split(), Returns(what="tuple"), MockEmbedding(embed_dim=4)])
    assert_same_nodes(stock.run(documents=list(DOCS)), ours.run(documents=list(DOCS)))


# --- embedding models that answer wrongly ----------------------------------------------------

class Answers(MockEmbedding):
    """MockEmbedding's vectors (one value per text, so a mismatch shows), bent as a broken model bends them."""

    how: str = "right"

    def _get_text_embeddings(self, texts: list[str]) -> Any:
        vectors = [[float(len(t))] * self.embed_dim for t in texts]
        return {"right": vectors, "fewer": vectors[:-1], "none": None,
                "mixed": [v + [0.0] if i == 1 else v for i, v in enumerate(vectors)]}[self.how]


def test_fewer_vectors_than_texts_are_refused_where_stock_pairs_them_with_the_wrong_nodes() -> None:
    model = lambda: Answers(embed_dim=4, how="fewer", embed_batch_size=3)  # noqa: E731
    nodes = IngestionPipeline(transformations=[split(), model()]).run(documents=list(DOCS))
    assert any(n.embedding is None for n in nodes)  # stock: silently short, and the rest misaligned
    assert any(n.embedding is not None and n.embedding[0] != len(n.get_content()) for n in nodes)
    ours = AAFlowIngestionPipeline(transformations=[split(), model()], parity=True)  # stock's slices, in order
    with pytest.raises(EmbeddingOutputError, match=r"^node doc0#0 \(document doc0\), node doc0#1 .*: Answers "
                                                   r"returned 2 vectors for 3 texts"):
        ours.run(documents=list(DOCS))


def test_a_model_returning_none_raises_stock_error_with_the_nodes_named() -> None:
    stock, ours = both(lambda: [split(), Answers(embed_dim=4, how="none")])
    error = stock_error(lambda: stock.run(documents=list(DOCS)))
    with pytest.raises(type(error), match=re.escape(str(error))) as info:
        ours.run(documents=list(DOCS))
    assert any("node doc" in note for note in info.value.__notes__)


def test_vectors_of_two_sizes_are_named() -> None:
    stock, ours = both(lambda: [split(), Answers(embed_dim=4, how="mixed")])
    assert {len(n.embedding) for n in stock.run(documents=list(DOCS))} == {4, 5}  # stock: accepted
    with pytest.raises(EmbeddingDimError, match=r"node doc\d#\d \(document doc\d\): its embedding has 5 values"):
        ours.run(documents=list(DOCS))  # an Arrow column and a FAISS index hold one size


def test_a_faiss_write_with_a_wrong_size_adds_nothing() -> None:
    import faiss
    from llama_index.vector_stores.faiss import FaissVectorStore

    nodes = lambda: [TextNode(text=f"node {i}", id_=f"n{i}", embedding=[0.5] * (8 if i == 2 else 4))  # noqa: E731
                     for i in range(4)]
    stock, ours = both(lambda: [], docstore=SimpleDocumentStore,
                       vector_store=lambda: FaissVectorStore(faiss_index=faiss.IndexFlatL2(4)))
    error = stock_error(lambda: stock.run(nodes=nodes()))
    assert stock.vector_store.client.ntotal == 2 and not stock.docstore.docs  # stock: vectors the docstore lacks
    with pytest.raises(type(error), match=r"node n2: its embedding has 8 values, the FAISS index holds 4"):
        ours.run(nodes=nodes())
    assert ours.vector_store.client.ntotal == 0 and not ours.docstore.docs  # aaflow: stores stay in step


# --- nothing already done is lost: the stock cache --------------------------------------------

class Raising(TransformComponent):
    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        if any("doc2" in (n.ref_doc_id or "") for n in nodes):
            raise RuntimeError("cannot handle doc2")
        return nodes


class FailsOn(MockEmbedding):
    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        if any("Document 2" in t for t in texts):
            raise RuntimeError("endpoint refused Document 2")
        return super()._get_text_embeddings(texts)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._get_text_embeddings(texts)


def cached(cache: IngestionCache, nodes: Sequence[BaseNode], transform: TransformComponent) -> Any:
    return cache.get(get_transformation_hash(nodes, transform))


@pytest.mark.parametrize("failing", [lambda: Raising(), lambda: FailsOn(embed_dim=4, embed_batch_size=2)],
                         ids=["transformation", "embedding"])
@pytest.mark.parametrize("run", ["run", "arun"])
def test_a_failing_step_keeps_the_cache_entries_of_the_steps_before_it(failing: Any, run: str) -> None:
    transformations = lambda: [split(), MockEmbedding(embed_dim=4), failing()]  # noqa: E731
    stock, ours = both(transformations, cache=IngestionCache, docstore=SimpleDocumentStore)
    call = (lambda p: p.run(documents=list(DOCS))) if run == "run" else (
        lambda p: asyncio.run(p.arun(documents=list(DOCS))))
    error = stock_error(lambda: call(stock))
    with pytest.raises(type(error), match=re.escape(str(error))):
        call(ours)
    split_nodes = split()(list(DOCS))
    for pipeline in (stock, ours):
        assert_same_nodes(cached(pipeline.cache, DOCS, split()), split_nodes)
        assert cached(pipeline.cache, split_nodes, MockEmbedding(embed_dim=4)) is not None
        assert not pipeline.docstore.docs  # nothing written past the transformations, as in stock
    entries = [p.cache.cache.get_all(collection=p.cache.collection) for p in (stock, ours)]
    assert len(entries[0]) == len(entries[1]) == 2 and set(entries[0]) == set(entries[1])
    ours.transformations[-1] = Returns(what="tuple")  # fixed: the finished steps come from the cache
    ours.run(documents=list(DOCS))
    assert ours.last_run.cache_hits == 2


class Flaky(TransformComponent):
    """Fails when told to; the flag is private, so the cache key is the same either way."""

    _fail: bool = PrivateAttr(default=False)

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        if self._fail:
            raise RuntimeError("flaky")
        return [TextNode(text=n.get_content().upper(), id_=f"{n.node_id}!") for n in nodes]


def test_a_failing_step_whose_answer_is_cached_is_served_as_stock_serves_it() -> None:
    def flaky(fail: bool) -> Flaky:
        step = Flaky()
        step._fail = fail
        return step

    split_nodes = split()(list(DOCS))
    key = get_transformation_hash(split_nodes, flaky(False))
    outputs = {}
    for name, cls in (("stock", IngestionPipeline), ("aaflow", AAFlowIngestionPipeline)):
        cache = IngestionCache()
        cache.put(key, flaky(False)(split()(list(DOCS))))  # an earlier run cached only the flaky step
        pipeline = cls(transformations=[split(), flaky(True)], cache=cache)
        outputs[name] = pipeline.run(documents=list(DOCS))  # stock never calls the flaky step
    assert_same_nodes(outputs["stock"], outputs["aaflow"])
    assert [n.node_id for n in outputs["aaflow"]] == [f"{n.node_id}!" for n in split_nodes]


# --- nothing already done is lost: the docstore and the vector store -------------------------

class Gate(TransformComponent):
    """Passes nodes through, or fails while closed; the flag is private, so cache keys ignore it."""

    _closed: bool = PrivateAttr(default=False)

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        if self._closed:
            raise RuntimeError("gate closed")
        return nodes


def gated(pipeline: IngestionPipeline, closed: bool) -> IngestionPipeline:
    pipeline.transformations[-1]._closed = closed
    return pipeline


def state(p: IngestionPipeline) -> tuple[Any, ...]:
    vectors = sorted(p.vector_store.data.embedding_dict) if p.vector_store is not None else None
    return p.docstore.get_all_document_hashes(), sorted(p.docstore.docs), vectors


def test_a_failed_run_does_not_mark_its_documents_as_stored() -> None:
    steps = lambda: [split(), MockEmbedding(embed_dim=4), Gate()]  # noqa: E731
    stock, ours = both(steps, docstore=SimpleDocumentStore, docstore_strategy=lambda: DocstoreStrategy.DUPLICATES_ONLY)
    for pipeline in (stock, ours):
        with pytest.raises(RuntimeError, match="gate closed"):
            gated(pipeline, True).run(documents=list(DOCS))
    assert stock.docstore.get_all_document_hashes() and not stock.docstore.docs  # stock: recorded, not stored
    assert gated(stock, False).run(documents=list(DOCS)) == []  # ... so its retry skips every document
    assert ours.docstore.get_all_document_hashes() == {}
    clean = IngestionPipeline(transformations=steps(), docstore=SimpleDocumentStore(),
                              docstore_strategy=DocstoreStrategy.DUPLICATES_ONLY)
    assert_same_nodes(clean.run(documents=list(DOCS)), gated(ours, False).run(documents=list(DOCS)))
    assert state(ours) == state(clean)


def test_a_failed_upsert_keeps_the_old_version_of_a_changed_document() -> None:
    steps = lambda: [split(), MockEmbedding(embed_dim=4), Gate()]  # noqa: E731
    stock, ours = both(steps, docstore=SimpleDocumentStore, vector_store=SimpleVectorStore)
    changed = [DOCS[0], Document(text="Document 1 was rewritten. " * 5, doc_id="doc1"), *DOCS[2:]]
    for pipeline in (stock, ours):
        pipeline.run(documents=list(DOCS))
    before = state(ours)
    assert before == state(stock) and "doc1#0" in before[2]
    for pipeline in (stock, ours):
        with pytest.raises(RuntimeError, match="gate closed"):
            gated(pipeline, True).run(documents=list(changed))
    assert "doc1#0" not in state(stock)[2]  # stock: the old version's vectors are gone, the new ones not there
    assert state(ours) == before  # aaflow: nothing already ingested was lost
    gated(stock, False).run(documents=list(changed))
    gated(ours, False).run(documents=list(changed))
    assert state(ours) == state(stock)  # after the retry both hold the new version, and only it
