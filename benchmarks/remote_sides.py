"""Sides of the remote benchmarks (`benchmarks/remote_bench.py`): each `setup(**params) -> run`.

LlamaIndex sides split and embed the same pages through `OpenAIEmbedding(embed_batch_size=16)`;
the floor sends the same requests with plain aiohttp, all at once; rate-limit sides send the
same 400 chat requests through the core client or stock `ChatOpenAI.batch`.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 16


def pages(corpus: str) -> list[Any]:
    from llama_index.core import Document

    return [Document(text=p.read_text(), doc_id=p.stem) for p in sorted(Path(corpus).glob("*.txt"))]


def transformations(base_url: str) -> list[Any]:
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.openai import OpenAIEmbedding

    return [SentenceSplitter(chunk_size=256, chunk_overlap=20, id_func=lambda i, doc: f"{doc.id_}-{i}"),
            OpenAIEmbedding(model="text-embedding-3-small", api_base=base_url, api_key="sk-local",
                            embed_batch_size=BATCH)]


def digest(vectors: np.ndarray, texts: list[str]) -> str:
    h = hashlib.sha256("\0".join(texts).encode())
    h.update(np.ascontiguousarray(vectors, np.float32).tobytes())
    return h.hexdigest()


def llamaindex_side(corpus: str, base_url: str, config: str) -> Callable[[], dict[str, Any]]:
    """stock_run, stock_arun, aaflow_run, aaflow_arun, aaflow_run_one_process (no split workers):
    a fresh pipeline (and openai client) per run. `cpu_s` is this process's CPU time (all its
    threads; split workers not included), `workers_cpu_s` the split workers' (from /proc)."""
    import faiss
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.vector_stores.faiss import FaissVectorStore

    from aaflow_adapters.llamaindex import AAFlowIngestionPipeline, start_split_workers

    cls = AAFlowIngestionPipeline if config.startswith("aaflow") else IngestionPipeline
    opts = {"split_processes": 0} if config.endswith("one_process") else {}
    go = (lambda pipe, docs: asyncio.run(pipe.arun(documents=docs))) if config.endswith("arun") else (
        lambda pipe, docs: pipe.run(documents=docs))
    if cls is AAFlowIngestionPipeline and not opts:
        start_split_workers()  # started once per process, as the HTTP sessions are: untimed, like the warm-up
    go(cls(transformations=transformations(base_url), **opts), pages(corpus)[:2])  # imports, tokenizer, sessions

    def run() -> dict[str, Any]:
        docs = pages(corpus)
        pipe = cls(transformations=transformations(base_url), vector_store=FaissVectorStore(faiss.IndexFlatL2(64)),
                   **opts)
        workers0, t0, c0 = workers_cpu_s(), time.perf_counter(), time.process_time()
        nodes = go(pipe, docs)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        vectors = np.asarray([n.embedding for n in nodes], np.float32)
        return {"wall_s": wall, "cpu_s": cpu, "workers_cpu_s": workers_cpu_s() - workers0, "rows": len(nodes),
                "output_sha256": digest(vectors, [f"{n.id_}|{n.start_char_idx}|{n.end_char_idx}|{n.metadata}|"
                                                  f"{sorted((k.value, v.node_id) for k, v in n.relationships.items())}|"
                                                  f"{n.get_content()}" for n in nodes])}

    return run


def workers_cpu_s() -> float:
    """CPU seconds (user + system) of this process's live children: the split workers."""
    import os

    total = 0
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for pid in children:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def floor_side(corpus: str, base_url: str) -> Callable[[], dict[str, Any]]:
    """The same requests (the stock splitter's chunks, 16 a request), all in flight from plain aiohttp."""
    import aiohttp

    nodes = transformations(base_url)[0](pages(corpus))
    texts = [n.get_content(metadata_mode="embed").replace("\n", " ") for n in nodes]

    async def every() -> np.ndarray:
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-local"},
                                         connector=aiohttp.TCPConnector(limit=0)) as session:
            async def one(chunk: list[str]) -> list[bytes]:
                body = {"model": "text-embedding-3-small", "input": chunk, "encoding_format": "base64"}
                async with session.post(f"{base_url}/embeddings", json=body) as resp:
                    data = (await resp.json())["data"]
                return [base64.b64decode(d["embedding"]) for d in data]

            rows = await asyncio.gather(*(one(texts[s:s + BATCH]) for s in range(0, len(texts), BATCH)))
        return np.frombuffer(b"".join(r for chunk in rows for r in chunk), np.float32).reshape(len(texts), -1)

    def run() -> dict[str, Any]:
        t0 = time.perf_counter()
        vectors = asyncio.run(every())
        return {"wall_s": time.perf_counter() - t0, "rows": len(texts),
                "output_sha256": digest(vectors, [f"{n.id_}|{n.start_char_idx}|{n.end_char_idx}|{n.metadata}|"
                                                  f"{sorted((k.value, v.node_id) for k, v in n.relationships.items())}|"
                                                  f"{n.get_content()}" for n in nodes])}

    return run


def questions(n: int) -> list[str]:
    return [f"question {i} about topic {i % 7} please" for i in range(n)]


def expected(q: str) -> str:
    return "echo: " + q  # EchoChat repeats the user message (well under its 32-token default)


def core_limits_side(base_url: str, n: int, rpm: float | None = None) -> Callable[[], dict[str, Any]]:
    """`n` chat requests through `aaflow_core.remote` (the endpoint's limits from its headers, or `rpm`)."""
    from aaflow_core.remote import Endpoint, Limits, Retries, shared_client

    client = shared_client()
    endpoint = Endpoint.of(base_url, api_key="sk-local", limits=Limits(rpm=rpm), retries=Retries(rate_limited=400))

    async def every() -> list[str]:
        bodies = await asyncio.gather(*(client.chat(endpoint, {"model": "m", "messages": [{"role": "user", "content": q}]})
                                        for q in questions(n)))
        return [b["choices"][0]["message"]["content"] for b in bodies]

    def run() -> dict[str, Any]:
        before = client.usage(endpoint).get(endpoint.base_url)
        t0 = time.perf_counter()
        answers = asyncio.run(every())
        wall = time.perf_counter() - t0
        used = client.usage(endpoint)[endpoint.base_url]
        used = used.minus(before) if before is not None else used
        return {"wall_s": wall, "correct": sum(a == expected(q) for a, q in zip(answers, questions(n))),
                "lost": n - len(answers), "requests": used.requests, "rejections": used.rejections}

    return run


def langchain_batch_side(base_url: str, n: int, max_concurrency: int = 64) -> Callable[[], dict[str, Any]]:
    """Stock `ChatOpenAI.batch(..., max_concurrency)`, return_exceptions=True: what a user gets today."""
    from langchain_openai import ChatOpenAI

    def run() -> dict[str, Any]:
        model = ChatOpenAI(model="m", base_url=base_url, api_key="sk-local")
        t0 = time.perf_counter()
        out = model.batch(questions(n), config={"max_concurrency": max_concurrency}, return_exceptions=True)
        wall = time.perf_counter() - t0
        answers = [getattr(o, "content", None) for o in out]
        return {"wall_s": wall, "correct": sum(a == expected(q) for a, q in zip(answers, questions(n))),
                "lost": sum(isinstance(o, BaseException) for o in out)}

    return run
