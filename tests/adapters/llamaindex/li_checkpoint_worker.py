"""A checkpointed AAFlowIngestionPipeline run in its own process, for the crash test to SIGKILL.

python li_checkpoint_worker.py BASE_URL CHECKPOINT OUT_DIR  ->  OUT_DIR holds nodes.json, docstore.json,
vector_store.json. The test process builds the same pipeline for stock, and serves HashEmbeddings.
"""
from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core import Document
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.vector_stores import SimpleVectorStore

class HashEmbeddings:
    """Vectors that depend only on the text (no model cost), and a count of requests per text."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    async def embed(self, texts: list[str]) -> np.ndarray:
        self.counts.update(texts)
        seeds = [int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little") for t in texts]
        return np.stack([np.random.default_rng(s).standard_normal(16) for s in seeds]).astype(np.float32)


DOCS = [Document(text=" ".join(f"Document {d} sentence {s} talks about topic {s % 7}." for s in range(60)),
                 doc_id=f"doc-{d}") for d in range(24)]


def stable_id(i: int, doc: Any) -> str:
    return f"{doc.node_id}#{i}"


def transformations(base_url: str) -> list[Any]:
    from llama_index.embeddings.openai import OpenAIEmbedding

    model = OpenAIEmbedding(model="text-embedding-3-small", api_base=base_url, api_key="sk-local", embed_batch_size=4,
                            max_retries=0)
    return [SentenceSplitter(chunk_size=40, chunk_overlap=4, id_func=stable_id), model]


def stores() -> dict[str, Any]:
    return {"docstore": SimpleDocumentStore(), "vector_store": SimpleVectorStore()}


def dump(nodes: Any, parts: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "nodes.json").write_text(json.dumps([[n.node_id, n.get_content(), n.embedding] for n in nodes]))
    (out / "docstore.json").write_text(json.dumps(parts["docstore"].to_dict(), sort_keys=True))
    (out / "vector_store.json").write_text(json.dumps(parts["vector_store"].to_dict(), sort_keys=True))


if __name__ == "__main__":
    base_url, checkpoint, out = sys.argv[1:4]
    from aaflow_adapters.llamaindex import AAFlowIngestionPipeline

    parts = stores()
    pipeline = AAFlowIngestionPipeline(transformations=transformations(base_url), checkpoint=checkpoint,
                                       embed_concurrency=8, **parts)
    dump(pipeline.run(documents=list(DOCS)), parts, Path(out))
