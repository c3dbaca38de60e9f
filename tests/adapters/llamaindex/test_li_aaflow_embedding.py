"""AAFlowEmbedding in a stock IngestionPipeline: the nodes and vectors HuggingFaceEmbedding gives."""
from __future__ import annotations

import numpy as np
import pytest
from llama_index.core import Document
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter

from aaflow_adapters.llamaindex import AAFlowIngestionPipeline
from aaflow_adapters.llamaindex.embeddings import AAFlowEmbedding, accelerated
from aaflow_core.errors import ConfigError
from aaflow_core.models import TOLERANCES
from aaflow_core.models.embedding import bundled_model_path

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def hf():
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    return HuggingFaceEmbedding(model_name=str(bundled_model_path()), device="cpu")


def docs(small_corpus) -> list[Document]:
    return [Document(text=p.read_text()[:6000], doc_id=p.stem) for p in sorted(small_corpus.iterdir())]


def test_accelerated_embedding_gives_stock_nodes_and_vectors(hf, small_corpus) -> None:
    split = SentenceSplitter(chunk_size=256, chunk_overlap=20)
    stock = IngestionPipeline(transformations=[split, hf]).run(documents=docs(small_corpus))
    fast = accelerated(hf, precision="fp32", backend="openvino")
    ours = AAFlowIngestionPipeline(transformations=[split, fast]).run(documents=docs(small_corpus))
    assert [n.get_content() for n in ours] == [n.get_content() for n in stock]
    diff = np.abs(np.array([n.embedding for n in ours]) - np.array([n.embedding for n in stock])).max()
    assert diff <= TOLERANCES["openvino-fp32"].max_abs
    query = fast.get_query_embedding("How do I decode JSON?")
    assert np.abs(np.array(query) - np.array(hf.get_query_embedding("How do I decode JSON?"))).max() <= 1e-5


def test_accelerated_refuses_instructions_and_other_settings(hf) -> None:
    with pytest.raises(ConfigError) as info:
        accelerated(hf.model_copy(update={"query_instruction": "query: "}))
    assert info.value.field == "query_instruction"
    with pytest.raises(ConfigError) as info:
        AAFlowEmbedding(precision="fp32", backend="auto")
    assert info.value.field == "precision"
