"""Bad input to the LangChain adapter: stock's exception type (or a subclass), a message naming the
item, stock's acceptance where stock accepts, and nothing already ingested lost."""
from __future__ import annotations

import asyncio
import math
import re
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.runnables import Runnable, RunnableBinding, RunnableLambda
from langchain_core.runnables.base import coerce_to_runnable
from langchain_text_splitters import RecursiveCharacterTextSplitter

from aaflow_adapters.errors import DuplicateIdError, EmbeddingOutputError, StepOutputError
from aaflow_adapters.langchain import AAFlowRunnable, index_documents
from aaflow_core import InputError

DIM = 8
SPLITTER = RecursiveCharacterTextSplitter(chunk_size=40, chunk_overlap=0)
FAKE = DeterministicFakeEmbedding(size=DIM)


def faiss_store(embeddings: Embeddings = FAKE) -> Any:
    import faiss
    from langchain_community.docstore.in_memory import InMemoryDocstore
    from langchain_community.vectorstores import FAISS

    return FAISS(embeddings, faiss.IndexFlatL2(DIM), InMemoryDocstore(), {})


def contents(store: Any) -> list[tuple[str, dict[str, Any], tuple[float, ...]]]:
    """Every row of a FAISS store in index order: text, metadata, vector (NaN-safe, comparable)."""
    out = []
    for i in range(store.index.ntotal):
        doc = store.docstore.search(store.index_to_docstore_id[i])
        vector = tuple(-1.0 if math.isnan(x) else x for x in store.index.reconstruct(i).tolist())
        out.append((doc.page_content, doc.metadata, vector))
    return out


def corpus(n: int = 8) -> list[Document]:
    return [Document(page_content=f"Document {i} talks about topic {i}. " * (1 + i % 3),
                     metadata={"source": f"doc{i}.txt"}) for i in range(n)]


def stock_error(fn: Any) -> BaseException:
    with pytest.raises(Exception) as info:
        fn()
    return info.value


def builtin_type(exc: BaseException) -> type[BaseException]:
    """The built-in exception type under a library's own (pydantic's ValidationError -> ValueError)."""
    return next(t for t in type(exc).__mro__ if t.__module__ == "builtins")


# --- AAFlowRunnable ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad, where", [
    (object(), r"runnable: is an object"),
    (None, r"runnable: is None"),
    (42, r"runnable: is an int"),
    ({"ok": lambda x: x, "bad": {"inner": 3}}, r"runnable\['bad'\]\['inner'\]: is an int"),
])
def test_not_a_runnable_raises_what_stock_raises(bad: Any, where: str) -> None:
    coerced = stock_error(lambda: coerce_to_runnable(bad))  # what `chain | bad` raises: TypeError
    bound = stock_error(lambda: RunnableBinding(bound=bad))  # what a binding raises: pydantic's ValueError
    with pytest.raises(type(coerced), match=where) as info:
        AAFlowRunnable(bad)
    assert isinstance(info.value, builtin_type(bound)) and isinstance(info.value, InputError)


def test_callables_and_dicts_are_coerced_as_lcel_does() -> None:
    for obj in (lambda x: x * 2, {"double": lambda x: x * 2, "same": RunnableLambda(lambda x: x)}):
        stock = coerce_to_runnable(obj)
        assert AAFlowRunnable(obj).batch([1, 2, 3]) == stock.batch([1, 2, 3])


async def _upper(text: str) -> str:
    return text.upper()


def test_async_only_step_works_in_abatch_and_fails_in_batch_like_stock() -> None:
    chain = RunnableLambda(lambda x: x + "!") | RunnableLambda(_upper)
    inputs = ["a", "b", "c"]
    assert asyncio.run(AAFlowRunnable(chain, batch_size=2).abatch(inputs)) == asyncio.run(chain.abatch(inputs))
    stock = stock_error(lambda: chain.batch(inputs))
    with pytest.raises(type(stock)) as info:
        AAFlowRunnable(chain).batch(inputs)
    assert str(info.value) == str(stock)


class DropsLast(Runnable[str, str]):
    """A broken step: its batch loses the last input."""

    def invoke(self, value: str, config: Any = None, **kwargs: Any) -> str:
        return value

    def batch(self, inputs: list[str], config: Any = None, *, return_exceptions: bool = False, **kw: Any) -> list[str]:
        return inputs[:-1]


def test_step_returning_the_wrong_number_of_outputs_is_named() -> None:
    chain = RunnableLambda(lambda x: x + "!") | DropsLast() | RunnableLambda(lambda x: x + "?")
    stock = stock_error(lambda: chain.batch(["a", "b", "c"]))
    with pytest.raises(type(stock), match=r"step DropsLast: its batch returned 2 outputs for 3 inputs"):
        AAFlowRunnable(chain).batch(["a", "b", "c"])
    # stock returns a short list for the step alone; aaflow cannot tell which input lost its output
    assert len(DropsLast().batch(["a", "b"])) == 1
    with pytest.raises(StepOutputError, match="1 outputs for 2 inputs"):
        AAFlowRunnable(DropsLast()).batch(["a", "b"])


# --- index_documents: documents -------------------------------------------------------------

def _assigned(field: str, value: Any) -> Document:
    doc = Document(page_content="fine text", metadata={"source": "bad.txt"})
    setattr(doc, field, value)  # Documents do not validate assignment
    return doc


@pytest.mark.parametrize("bad, message", [
    ("just a string", r"docs\[1\]: is a str, not a Document"),
    (None, r"docs\[1\]: is None, not a Document"),
    ({"page_content": "x"}, r"docs\[1\]: is a dict, not a Document"),
    (_assigned("page_content", b"bytes"), r"docs\[1\] \(source='bad.txt'\): page_content is a bytes"),
    (_assigned("page_content", None), r"docs\[1\] \(source='bad.txt'\): page_content is None"),
    (_assigned("metadata", None), r"docs\[1\]: metadata is None, expected a dict"),
])
def test_bad_document_raises_stock_type_and_writes_nothing(bad: Any, message: str) -> None:
    docs = [Document(page_content="a good document", metadata={"source": "good.txt"}), bad]
    stock_store, store = faiss_store(), faiss_store()
    stock = stock_error(lambda: stock_store.add_documents(SPLITTER.split_documents(docs)))
    with pytest.raises(builtin_type(stock), match=message) as info:
        index_documents(docs, SPLITTER, FAKE, store)
    assert isinstance(info.value, InputError)
    assert store.index.ntotal == stock_store.index.ntotal == 0  # stock splits everything before writing


class Duck:
    """Not a Document, but it has what a splitter reads: stock accepts it, so aaflow does."""

    def __init__(self, text: str) -> None:
        self.page_content, self.metadata = text, {"source": "duck.txt"}


def test_document_like_objects_are_accepted_as_stock_does() -> None:
    docs = [corpus(1)[0], Duck("quack " * 20)]
    stock = faiss_store()
    stock.add_documents(SPLITTER.split_documents(docs))
    ours = faiss_store()
    index_documents(docs, SPLITTER, FAKE, ours)
    assert contents(ours) == contents(stock) and len(contents(ours)) > 2


# --- index_documents: embedding answers -----------------------------------------------------

class Answers(Embeddings):
    """Real fake vectors, bent the way a broken model or endpoint bends them."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def embed_query(self, text: str) -> list[float]:
        return FAKE.embed_query(text)

    def embed_documents(self, texts: list[str]) -> Any:
        vectors = FAKE.embed_documents(texts)
        bent = {
            "fewer": lambda: vectors[:-1], "more": lambda: vectors + vectors[:1], "none": lambda: None,
            "ragged": lambda: [v[: DIM // 2] if i == 1 else v for i, v in enumerate(vectors)],
            "small": lambda: [v[: DIM // 2] for v in vectors], "words": lambda: [["x"] * DIM for _ in vectors],
            "nan": lambda: [[math.nan] * DIM if "3" in t else v for t, v in zip(texts, vectors)],
        }
        return bent[self.mode]()


@pytest.mark.parametrize("mode, message", [
    ("fewer", r"chunk 0 \(docs\[0\] \(source='doc0.txt'\)\) \.\. chunk 2 .*: Answers returned 2 vectors for 3 texts"),
    ("more", r"Answers returned 4 vectors for 3 texts"),
    ("none", r"Answers returned None, expected 3 vectors"),
    ("ragged", r"chunk 1 \(docs\[1\] \(source='doc1.txt'\)\): .* has 4 values where the first has 8"),
    ("words", r"chunk 0 .*: Answers returned a vector that is not all numbers"),
    ("small", r"chunk 0 .*: vectors have 4 values, the FAISS index holds 8-value vectors"),
])
def test_bad_embedding_answer_raises_stock_type_naming_the_chunks(mode: str, message: str) -> None:
    docs, bad = corpus(4), Answers(mode)
    stock_store = faiss_store(bad)
    stock = stock_error(lambda: stock_store.add_documents(SPLITTER.split_documents(docs)))
    with pytest.raises(type(stock), match=message) as info:
        index_documents(docs, SPLITTER, bad, faiss_store(bad), embed_batch_size=3)
    assert isinstance(info.value, EmbeddingOutputError)


def test_nan_vectors_are_stored_as_stock_stores_them() -> None:
    docs, nan = corpus(5), Answers("nan")
    stock = faiss_store(nan)
    stock.add_documents(SPLITTER.split_documents(docs))
    ours = faiss_store(nan)
    index_documents(docs, SPLITTER, nan, ours, embed_batch_size=3)
    assert contents(ours) == contents(stock)
    assert any(v[0] == -1.0 for _, _, v in contents(ours))  # the NaN rows are there, as in stock


# --- nothing already ingested is lost --------------------------------------------------------

class FailsOn(Embeddings):
    """The fake model, except that a text containing `marker` makes the whole call fail."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def embed_query(self, text: str) -> list[float]:
        return FAKE.embed_query(text)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if any(self.marker in t for t in texts):
            raise RuntimeError(f"model refused a text with {self.marker!r}")
        return FAKE.embed_documents(texts)


def ingested_prefix(err: BaseException) -> int:
    [note] = [n for n in getattr(err, "__notes__", []) if "the vector store holds" in n]
    return int(re.search(r"docs\[:(\d+)\]", note).group(1))


def stock_contents(docs: list[Document]) -> list[Any]:
    store = faiss_store()
    if docs:
        store.add_documents(SPLITTER.split_documents(docs))
    return contents(store)


@pytest.mark.parametrize("docs_per_batch, embed_batch_size", [(1, 2), (2, 3), (3, 64)])
def test_a_failing_model_keeps_the_whole_documents_before_it(docs_per_batch: int, embed_batch_size: int) -> None:
    docs = corpus(8)
    docs[5] = Document(page_content="Fine start. " * 4 + "POISON here. " + "More text. " * 4,
                       metadata={"source": "doc5.txt"})
    store = faiss_store()
    with pytest.raises(RuntimeError, match="model refused") as info:  # the model's own error, as stock raises it
        index_documents(docs, SPLITTER, FailsOn("POISON"), store, docs_per_batch=docs_per_batch,
                        embed_batch_size=embed_batch_size)
    k = ingested_prefix(info.value)
    assert k <= 5
    assert contents(store) == stock_contents(docs[:k])  # whole documents only: none of docs[5]'s first chunks
    docs[5] = Document(page_content=docs[5].page_content.replace("POISON", "cured"), metadata=docs[5].metadata)
    index_documents(docs[k:], SPLITTER, FAKE, store, docs_per_batch=docs_per_batch, embed_batch_size=embed_batch_size)
    assert contents(store) == stock_contents(docs)  # resumed: exactly the uninterrupted result


class FailingSplitter(RecursiveCharacterTextSplitter):
    def split_text(self, text: str) -> list[str]:
        if "POISON" in text:
            raise ValueError("cannot split this one")
        return super().split_text(text)


def test_a_failing_splitter_is_named_and_keeps_the_documents_before_it() -> None:
    docs = corpus(6)
    docs[4] = Document(page_content="POISON", metadata={"source": "doc4.txt"})
    splitter = FailingSplitter(chunk_size=40, chunk_overlap=0)
    store = faiss_store()
    with pytest.raises(ValueError, match="cannot split this one") as info:
        index_documents(docs, splitter, FAKE, store, docs_per_batch=1, embed_batch_size=2)
    assert any("splitting docs[4] (source='doc4.txt')" in n for n in info.value.__notes__)
    k = ingested_prefix(info.value)
    assert k <= 4 and contents(store) == stock_contents(docs[:k])


class KeepsIds(RecursiveCharacterTextSplitter):
    """A splitter that gives chunks ids derived from their document's id."""

    def split_documents(self, documents: Any) -> list[Document]:
        out = []
        for doc in documents:
            chunks = super().split_documents([doc])
            out += [Document(id=f"{doc.id}-{j}", page_content=c.page_content, metadata=c.metadata)
                    for j, c in enumerate(chunks)]
        return out


def test_ids_already_in_the_store_are_refused_before_the_index_is_touched() -> None:
    splitter = KeepsIds(chunk_size=40, chunk_overlap=0)
    first = [Document(id="a", page_content="alpha " * 5), Document(id="b", page_content="beta " * 5)]
    again = [Document(id="c", page_content="gamma " * 5), Document(id="a", page_content="alpha " * 5)]
    stock = faiss_store()
    stock.add_documents(splitter.split_documents(first))
    with pytest.raises(ValueError, match="already exist"):
        stock.add_documents(splitter.split_documents(again))
    assert stock.index.ntotal != len(stock.index_to_docstore_id)  # stock: vectors without documents
    ours = faiss_store()
    index_documents(first, splitter, FAKE, ours)
    with pytest.raises(DuplicateIdError, match=r"docs\[1\] \(id='a'\).*\['a-0'\]") as info:
        index_documents(again, splitter, FAKE, ours, docs_per_batch=1, embed_batch_size=1)
    assert isinstance(info.value, ValueError) and ingested_prefix(info.value) == 1
    assert ours.index.ntotal == len(ours.index_to_docstore_id) == len(stock_contents(first + again[:1]))
