"""Run under `mpiexec -n 2`: `AAFlowIngestionPipeline.run` spread over the ranks, next to stock on rank 0.

argv: WORK. Every rank loads the bundled model once (one torch thread) and runs:
A) SentenceSplitter + HuggingFaceEmbedding into a FaissVectorStore with a docstore; B) A again
(the docstore has every document); C) a fresh pipeline, no stores (a rerun of A's nodes);
D) a transformation that fails on a document in rank 1's shard. Rank 0 then runs stock
`IngestionPipeline` and a 1-rank aaflow run on the same documents. Each rank writes
WORK/li-<rank>.json (nodes as LlamaIndex JSON, outcomes) and WORK/li-<rank>-<run>.npy.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import faiss
import numpy as np
import torch
from adapter_support import count_pickles, write_report
from llama_index.core import Document
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import BaseNode, TransformComponent
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.storage.docstore.utils import doc_to_json
from llama_index.core.vector_stores.types import VectorStoreQuery
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llama_index.vector_stores.faiss import FaissVectorStore

from aaflow_adapters.llamaindex import AAFlowIngestionPipeline
from aaflow_core.distributed import Comm
from aaflow_core.errors import RankError
from aaflow_core.models.embedding import bundled_model_path

QUESTION = "How do I split a shell command line into tokens?"
TOPICS = ["shlex splits a shell command line into tokens.", "json decodes and encodes JSON documents.",
          "textwrap fills and wraps paragraphs of text.", "difflib compares sequences of lines.",
          "base64 encodes binary data as ASCII text.", "fnmatch matches file names against patterns."]


def documents() -> list[Document]:
    """Six small documents (a few nodes each), ids and metadata fixed."""
    return [Document(text=" ".join(f"{t} Sentence {j} about {t.split()[0]} adds more words here." for j in range(9)),
                     doc_id=f"doc-{i}", metadata={"topic": t.split()[0], "n": i}) for i, t in enumerate(TOPICS)]


def stable_id(i: int, doc: BaseNode) -> str:
    return f"{doc.node_id}#{i}"


class FailOn(TransformComponent):
    """Raises on the nodes of one document (which lies in rank 1's shard)."""

    doc_id: str

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        if any(n.ref_doc_id == self.doc_id for n in nodes):
            raise ValueError(f"bad document {self.doc_id}")
        return nodes


def as_json(nodes: Sequence[BaseNode]) -> list[dict]:
    out = []
    for node in nodes:
        data = doc_to_json(node)
        data["__data__"].pop("embedding")
        out.append(data)
    return out


def top_ids(store: FaissVectorStore, nodes: Sequence[BaseNode], query: list[float]) -> list[str]:
    """Node ids of the 5 nearest rows (FAISS ids are insertion positions)."""
    hits = store.query(VectorStoreQuery(query_embedding=query, similarity_top_k=5))
    return [nodes[int(i)].node_id for i in hits.ids]


def main(work: str) -> None:
    torch.set_num_threads(1)
    comm = Comm.world()
    pickles = count_pickles()
    model = HuggingFaceEmbedding(model_name=str(bundled_model_path()), embed_batch_size=8)
    splitter = SentenceSplitter(chunk_size=96, chunk_overlap=16, id_func=stable_id)
    store, docstore = FaissVectorStore(faiss_index=faiss.IndexFlatIP(384)), SimpleDocumentStore()
    pipe = AAFlowIngestionPipeline(transformations=[splitter, model], vector_store=store, docstore=docstore)
    runs = {"a": pipe.run(documents=documents())}
    runs["b"] = pipe.run(documents=documents())
    runs["c"] = AAFlowIngestionPipeline(transformations=[splitter, model]).run(documents=documents())
    query = model.get_query_embedding(QUESTION)
    report: dict[str, Any] = {
        "size": comm.size, "nodes_a": as_json(runs["a"]), "len_b": len(runs["b"]),
        "faiss_rows": store.client.ntotal, "docstore_docs": len(docstore.docs),
        "top_a": top_ids(store, runs["a"], query) if comm.is_root else None,
    }
    try:
        AAFlowIngestionPipeline(transformations=[splitter, FailOn(doc_id="doc-5")]).run(documents=documents())
        report["failure"] = None
    except RankError as exc:
        report["failure"] = {"rank": exc.rank, "message": str(exc)}
    report["pickles"] = dict(pickles)
    if comm.is_root:  # references, in this process: stock, and aaflow on one rank
        stock_store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(384))
        runs["stock"] = IngestionPipeline(transformations=[splitter, model], vector_store=stock_store).run(
            documents=documents())
        runs["one"] = AAFlowIngestionPipeline(transformations=[splitter, model], ranks=1).run(documents=documents())
        report.update(nodes_stock=as_json(runs["stock"]), nodes_one=as_json(runs["one"]),
                      top_stock=top_ids(stock_store, runs["stock"], query))
    for name, nodes in runs.items():
        if nodes:
            np.save(Path(work, f"li-{comm.rank}-{name}.npy"), np.asarray([n.embedding for n in nodes], np.float32))
    write_report(work, "li", comm.rank, report)


if __name__ == "__main__":
    main(sys.argv[1])
