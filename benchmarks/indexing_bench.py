"""Stock `langchain_core.indexing.index` vs `aaflow_adapters.langchain.index`, one run, same inputs.

`OpenAIEmbeddings(chunk_size=16)` against aaflow's OpenAI-compatible server on 127.0.0.1 with a
fixed service latency per request (a hashed, deterministic embedding backend, so the server's
model is not what is measured). Each side indexes the same chunks into its own FAISS store and
InMemoryRecordManager; the record-manager keys and the store contents are compared. The floor:
every request of the run in flight at once from a bare aiohttp client.

    python benchmarks/indexing_bench.py [--chunks 1024] [--latency 0.1] [--out benchmarks/results/indexing.json]
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

warnings.filterwarnings("ignore", message="Using SHA-1")
DIM = 64


class HashedEmbeddings:
    """A deterministic embedding per text (sha256-seeded), computed in microseconds."""

    async def embed(self, texts: list[str]) -> np.ndarray:
        rows = [np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little"))
                .standard_normal(DIM) for t in texts]
        return np.asarray(rows, dtype=np.float32)


def chunks(n: int) -> list[Any]:
    from langchain_core.documents import Document

    return [Document(page_content=f"Chunk {i} of source {i // 16}: the json module decodes documents; "
                                  f"shlex splits shell lines; fnmatch matches names, variant {i}.",
                     metadata={"source": f"s{i // 16}", "chunk": i % 16}) for i in range(n)]


def side(fn: Any, docs: list[Any], base_url: str, **kw: Any) -> tuple[float, Any, Any, Any]:
    import faiss
    from langchain_community.docstore.in_memory import InMemoryDocstore
    from langchain_community.vectorstores import FAISS
    from langchain_core.indexing import InMemoryRecordManager
    from langchain_openai import OpenAIEmbeddings

    emb = OpenAIEmbeddings(base_url=base_url, api_key="not-needed", model="hashed", chunk_size=16,
                           check_embedding_ctx_length=False, max_retries=0)
    store, rm = FAISS(emb, faiss.IndexFlatL2(DIM), InMemoryDocstore(), {}), InMemoryRecordManager("bench")
    t0 = time.perf_counter()
    result = fn(docs, rm, store, cleanup="incremental", source_id_key="source", **kw)
    wall = time.perf_counter() - t0
    ids = [store.index_to_docstore_id[i] for i in range(store.index.ntotal)]
    contents = (ids, [store.docstore.search(i).page_content for i in ids], store.index.reconstruct_n(0, len(ids)))
    return wall, result, sorted(rm.records), contents


async def bare_floor(base_url: str, texts: list[str]) -> float:
    """Every request (16 texts each) in flight at once from one aiohttp session."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async def one(batch: list[str]) -> None:
            async with session.post(f"{base_url}/embeddings", json={"input": batch, "model": "hashed"}) as r:
                await r.json()

        t0 = time.perf_counter()
        await asyncio.gather(*(one(texts[i:i + 16]) for i in range(0, len(texts), 16)))
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=1024)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from langchain_core.indexing import index as stock_index

    from aaflow_adapters.langchain import index
    from aaflow_core.serve.app import create_app
    from aaflow_core.serve.thread import ServerThread

    docs = chunks(args.chunks)
    with ServerThread(create_app(embeddings=HashedEmbeddings(), latency_s=args.latency)) as server:
        url = server.base_url
        side(stock_index, docs[:32], url)  # warm both clients and imports
        side(index, docs[:32], url)
        stock = side(stock_index, docs, url)
        runs = {"stock index": stock}
        for workers in (None, 16):
            runs[f"aaflow index (embed_workers={workers or 'default 8'})"] = side(index, docs, url,
                                                                                   embed_workers=workers)
        floor = asyncio.run(bare_floor(url, [d.page_content for d in docs]))
    out: dict[str, Any] = {"chunks": args.chunks, "latency_s": args.latency, "chunk_size": 16, "batch_size": 100,
                           "embedding_path": "embed_matrix -> lean_openai.embed_lean: OpenAIEmbeddings' own "
                                             "requests through aaflow_core.remote, all in flight; batches overlapped",
                           "bare_aiohttp_floor_s": round(floor, 3), "sides": {}}
    for name, (wall, result, keys, contents) in runs.items():
        same = (result == stock[1] and keys == stock[2] and contents[:2] == stock[3][:2]
                and np.array_equal(contents[2], stock[3][2]))
        out["sides"][name] = {"wall_s": round(wall, 3), "speedup_vs_stock": round(stock[0] / wall, 2),
                              "result": result, "same_keys_and_store_as_stock": same}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
