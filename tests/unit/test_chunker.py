"""The recursive character chunker: LangChain-identical chunks, content-derived ids, bounds."""
from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_text_splitters import RecursiveCharacterTextSplitter

from aaflow_core.dataplane import DOCUMENTS
from aaflow_core.errors import ConfigError
from aaflow_core.operators import ChunkOperator, RecursiveCharacterChunker

SIZES = [(1000, 100), (200, 50), (37, 11), (5, 0)]


@pytest.mark.parametrize("size, overlap", SIZES)
def test_same_chunks_as_langchain_on_real_text(small_corpus, size, overlap):
    for path in sorted(small_corpus.iterdir()):
        text = path.read_text()
        ours = RecursiveCharacterChunker(size, overlap).split(text)
        theirs = RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=overlap).split_text(text)
        assert ours == theirs, path.name


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from(list("ab c\n\n\nxyz.")), max_size=400),
    size=st.integers(1, 60),
    overlap_frac=st.floats(0, 0.9),
)
def test_property_matches_langchain_and_respects_size(text, size, overlap_frac):
    overlap = min(int(size * overlap_frac), size - 1)
    ours = RecursiveCharacterChunker(size, overlap).split(text)
    assert ours == RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=overlap).split_text(text)
    assert all(chunk for chunk in ours)
    assert all(len(chunk) <= size for chunk in ours)


@pytest.mark.parametrize("size, overlap", [(0, 0), (10, 10), (10, -1), (10, 20)])
def test_invalid_size_or_overlap_is_rejected(size, overlap):
    with pytest.raises(ConfigError):
        RecursiveCharacterChunker(size, overlap)


def test_chunk_ids_are_content_derived_and_stable():
    docs = pa.RecordBatch.from_pydict(
        {"doc_id": ["d1", "d2"], "source": ["a", "b"], "text": ["alpha beta gamma " * 30, "delta " * 50],
         "metadata": ["{}", "{}"]}, schema=DOCUMENTS)
    op = ChunkOperator(chunk_size=100, chunk_overlap=10)
    first, second = op.process(docs), op.process(docs)
    assert first.column("chunk_id").equals(second.column("chunk_id"))
    ids = first.column("chunk_id").to_pylist()
    assert len(set(ids)) == len(ids)
    changed = docs.set_column(2, "text", pa.array(["alpha beta gamma " * 30, "epsilon " * 50], pa.large_string()))
    again = op.process(changed).column("chunk_id").to_pylist()
    d1 = [i for i, d in zip(ids, first.column("doc_id").to_pylist()) if d == "d1"]
    assert again[: len(d1)] == d1 and set(again[len(d1):]).isdisjoint(ids)
