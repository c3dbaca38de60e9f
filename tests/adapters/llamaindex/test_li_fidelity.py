"""Gaps found by trying AAFlowIngestionPipeline as a new user would (issue 18), each against stock."""
from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Sequence

import pytest
from li_support import assert_same_nodes, stable_id
from llama_index.core import Document
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.extractors import KeywordExtractor, SummaryExtractor, TitleExtractor
from llama_index.core.ingestion import DocstoreStrategy, IngestionCache, IngestionPipeline
from llama_index.core.ingestion.pipeline import _run_transformations_worker
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import BaseNode, TextNode, TransformComponent
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.vector_stores import SimpleVectorStore

from aaflow_adapters.llamaindex import AAFlowIngestionPipeline
from aaflow_adapters.llamaindex.locality import document_local

DOCS = [Document(text=f"Document {i} begins. " + f"Sentence {i} has words. " * 14, doc_id=f"d{i}") for i in range(6)]


def split(size: int = 48) -> SentenceSplitter:
    return SentenceSplitter(chunk_size=size, chunk_overlap=0, id_func=stable_id)


def fresh_docs() -> list[Document]:
    return [Document(text=d.text, doc_id=d.doc_id, metadata=dict(d.metadata)) for d in DOCS]


def both(**kw: Any) -> tuple[list[BaseNode], list[BaseNode]]:
    """Stock's and aaflow's output for fresh copies of the same transformations (callables in `kw`)."""
    make = lambda cls, **extra: cls(**{k: v() for k, v in kw.items()}, **extra)  # noqa: E731
    stock = make(IngestionPipeline).run(documents=fresh_docs())
    ours = make(AAFlowIngestionPipeline, batch_chars=300).run(documents=fresh_docs())  # many small batches
    return stock, ours


# 1 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argument", ["documents", "nodes"])
def test_a_generator_of_inputs_is_ingested_as_stock_ingests_it(argument: str) -> None:
    stock = IngestionPipeline(transformations=[split()]).run(**{argument: (d for d in fresh_docs())})
    ours = AAFlowIngestionPipeline(transformations=[split()]).run(**{argument: (d for d in fresh_docs())})
    assert len(stock) > len(DOCS)
    assert_same_nodes(stock, ours)
    again = asyncio.run(AAFlowIngestionPipeline(transformations=[split()]).arun(**{argument: iter(fresh_docs())}))
    assert_same_nodes(stock, again)


# 2 ---------------------------------------------------------------------------------------------
class Strip(TransformComponent):
    """Edits the input documents in place, as user cleaning steps do."""

    def __call__(self, nodes: Sequence[BaseNode], **kw: Any) -> Sequence[BaseNode]:
        for n in nodes:
            n.set_content(n.get_content().strip())
        return nodes


@pytest.mark.parametrize("strategy", [DocstoreStrategy.UPSERTS, DocstoreStrategy.UPSERTS_AND_DELETE])
@pytest.mark.parametrize("disable_cache", [False, True])
def test_upserts_delete_the_old_version_when_a_transformation_edits_inputs_in_place(strategy, disable_cache) -> None:
    def state(cls: type) -> tuple[Any, ...]:
        ds, vs = SimpleDocumentStore(), SimpleVectorStore()
        counts = []
        for text in ("Some text. " * 30 + "\n", "Some text. " * 30 + "\n", "Other text. " * 30 + "\n"):
            splitter = SentenceSplitter(chunk_size=32, chunk_overlap=0)  # random node ids, stock's default
            pipe = cls(transformations=[Strip(), splitter, MockEmbedding(embed_dim=4)], docstore=ds,
                       vector_store=vs, docstore_strategy=strategy, disable_cache=disable_cache)
            nodes = pipe.run(documents=[Document(text=text, doc_id="d1")])  # a new pipeline per run: cache misses
            counts.append((len(nodes), len(vs.data.embedding_dict), len(ds.docs)))
        return counts, ds.get_all_document_hashes(), sorted(vs.data.text_id_to_ref_doc_id.values())

    expected = state(IngestionPipeline)
    assert all(n == stored for n, stored, _ in expected[0])  # stock: no stale vectors
    assert state(AAFlowIngestionPipeline) == expected


# 3 ---------------------------------------------------------------------------------------------
def test_summary_extractor_sees_its_neighbours_across_the_whole_list() -> None:
    stock, ours = both(transformations=lambda: [split(), SummaryExtractor(summaries=["prev", "self", "next"],
                                                                             llm=MockLLM(max_tokens=3))])
    assert sum("next_section_summary" in n.metadata for n in stock) == len(stock) - 1
    assert_same_nodes(stock, ours)


def test_title_extractor_fed_nodes_titles_each_document_once() -> None:
    nodes = split()(fresh_docs())

    def run(cls: type, **extra: Any) -> list[BaseNode]:
        fresh = [TextNode.model_validate(n.model_dump()) for n in nodes]
        return cls(transformations=[TitleExtractor(nodes=2, llm=MockLLM())], **extra).run(nodes=fresh)  # echoes

    assert_same_nodes(run(IngestionPipeline), run(AAFlowIngestionPipeline, batch_chars=100))


class Dedup(TransformComponent):
    """A user component that drops nodes whose text it has already seen in this list."""

    def __call__(self, nodes: Sequence[BaseNode], **kw: Any) -> Sequence[BaseNode]:
        seen: set[str] = set()
        return [n for n in nodes if not (n.get_content() in seen or seen.add(n.get_content()))]


def test_a_user_component_that_dedups_across_the_list_sees_the_whole_list() -> None:
    docs = lambda: [Document(text="Same words in every document. " * 3, doc_id=f"x{i}") for i in range(8)]  # noqa: E731
    stock = IngestionPipeline(transformations=[split(), Dedup()]).run(documents=docs())
    ours = AAFlowIngestionPipeline(transformations=[split(), Dedup()], batch_chars=50).run(documents=docs())
    assert len(stock) == 1
    assert_same_nodes(stock, ours)


class Calls(TransformComponent):
    """Records the documents of every list it is called on; declared document-local."""

    aaflow_document_local: ClassVar[bool] = True
    calls: list[list[str]] = []

    def __call__(self, nodes: Sequence[BaseNode], **kw: Any) -> Sequence[BaseNode]:
        self.calls.append([n.ref_doc_id for n in nodes])
        return nodes


def test_document_local_steps_are_split_only_at_document_boundaries() -> None:
    ours = Calls()
    chunks = lambda: [TextNode.model_validate(n.model_dump()) for n in split()(fresh_docs())]  # noqa: E731
    stock = IngestionPipeline(transformations=[Calls(), split(24)]).run(nodes=chunks())
    got = AAFlowIngestionPipeline(transformations=[ours, split(24)], batch_chars=100).run(nodes=chunks())
    assert_same_nodes(stock, got)
    assert len(ours.calls) > 1  # streamed in pieces
    seen: list[str] = []
    for call in ours.calls:  # every document's nodes arrive in exactly one call, whole
        docs = list(dict.fromkeys(call))
        assert not set(docs) & set(seen)
        seen += docs
    assert seen == [d.doc_id for d in DOCS]


def test_which_transformations_are_document_local() -> None:
    class MySplitter(SentenceSplitter):  # a subclass may override the parsing: whole-list unless declared
        pass

    class Declared(MySplitter):
        aaflow_document_local: ClassVar[bool] = True

    assert document_local(split()) and document_local(KeywordExtractor(llm=MockLLM())) and document_local(
        MockEmbedding(embed_dim=2)) and document_local(Declared())
    for other in (MySplitter(), SummaryExtractor(llm=MockLLM()), TitleExtractor(llm=MockLLM()), Dedup(), Strip()):
        assert not document_local(other), other


# 4 ---------------------------------------------------------------------------------------------
class Tagged(MockEmbedding):
    """A BaseEmbedding whose __call__/acall also tag the nodes (its own post-processing)."""

    def __call__(self, nodes: Sequence[BaseNode], **kw: Any) -> Sequence[BaseNode]:
        nodes = super().__call__(nodes, **kw)
        for i, n in enumerate(nodes):
            n.metadata["tag"] = f"sync {i} of {len(nodes)}"
        return nodes

    async def acall(self, nodes: Sequence[BaseNode], **kw: Any) -> Sequence[BaseNode]:
        nodes = await super().acall(nodes, **kw)
        for n in nodes:
            n.metadata["tag"] = "async"
        return nodes


def test_embedding_call_overrides_are_honoured() -> None:
    stock, ours = both(transformations=lambda: [split(), Tagged(embed_dim=4)])
    assert stock[-1].metadata["tag"] == f"sync {len(stock) - 1} of {len(stock)}"
    assert_same_nodes(stock, ours)
    stock_a = asyncio.run(IngestionPipeline(transformations=[split(), Tagged(embed_dim=4)]).arun(documents=fresh_docs()))
    ours_a = asyncio.run(AAFlowIngestionPipeline(transformations=[split(), Tagged(embed_dim=4)]).arun(
        documents=fresh_docs()))
    assert stock_a[0].metadata["tag"] == "async"
    assert_same_nodes(stock_a, ours_a)


# 5 ---------------------------------------------------------------------------------------------
class Counted(TransformComponent):
    calls: list[int] = []

    def __call__(self, nodes: Sequence[BaseNode], **kw: Any) -> Sequence[BaseNode]:
        self.calls.append(len(nodes))
        return nodes


class AsTuple(TransformComponent):
    def __call__(self, nodes: Sequence[BaseNode], **kw: Any) -> Sequence[BaseNode]:
        return tuple(nodes)


@pytest.mark.parametrize("disable_cache", [False, True])
def test_empty_input_calls_every_transformation_once_as_stock(disable_cache: bool) -> None:
    stock_c, ours_c = Counted(), Counted()
    stock = IngestionPipeline(transformations=[split(), stock_c, MockEmbedding(embed_dim=2)],
                              disable_cache=disable_cache).run(documents=[])
    ours = AAFlowIngestionPipeline(transformations=[split(), ours_c, MockEmbedding(embed_dim=2)],
                                   disable_cache=disable_cache).run(documents=[])
    assert stock_c.calls == ours_c.calls == [0]
    assert stock == ours == []


def test_a_tuple_returned_by_the_last_step_comes_back_as_stock_returns_it() -> None:
    stock, ours = both(transformations=lambda: [split(), AsTuple()])
    assert type(stock) is tuple and type(ours) is tuple
    assert_same_nodes(stock, ours)
    stock, ours = both(transformations=lambda: [AsTuple(), split()])  # a list again after the splitter
    assert type(stock) is list and type(ours) is list


# 6 ---------------------------------------------------------------------------------------------
def test_num_workers_cache_keys_are_stocks_and_fill_each_other() -> None:
    steps = lambda: [split(), MockEmbedding(embed_dim=4)]  # noqa: E731
    stock_cache, our_cache = IngestionCache(), IngestionCache()
    # stock's num_workers=2 path without its spawn pool (12 s here): its partitions, each through the
    # worker function the pool runs, on the same cache
    stock = [n for part in IngestionPipeline._node_batcher(2, fresh_docs())
             for n in _run_transformations_worker(part, steps(), cache=stock_cache)[0]]
    ours_pipe = AAFlowIngestionPipeline(transformations=steps(), cache=our_cache)
    ours = ours_pipe.run(documents=fresh_docs(), num_workers=2)
    assert_same_nodes(stock, ours)
    keys = lambda c: sorted(c.cache.get_all(collection=c.collection))  # noqa: E731
    assert keys(our_cache) == keys(stock_cache) and len(keys(stock_cache)) == 4  # 2 partitions x 2 steps
    served = AAFlowIngestionPipeline(transformations=steps(), cache=stock_cache)
    assert_same_nodes(stock, served.run(documents=fresh_docs(), num_workers=2))
    assert served.last_run.cache_hits == 4  # every step of every partition from stock's cache

