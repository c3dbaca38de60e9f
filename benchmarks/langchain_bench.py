"""Stock LangChain vs aaflow, side by side in one run, same inputs; results as JSON.

1. Ingestion: `store.add_documents(splitter.split_documents(docs))` vs `index_documents(...)` on a
   real corpus (stdlib pydoc pages), phases load/chunk/embed/upsert, contents compared.
2. RAG: N questions through `chain.batch` (defaults, and `max_concurrency` raised to aaflow's
   in-flight limit) vs `AAFlowRunnable(chain).batch`, with the chat model behind an
   OpenAI-compatible server (EchoChat, fixed latency) in a subprocess on loopback; answers compared.

    python benchmarks/langchain_bench.py [--quick] [--out benchmarks/results/langchain.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle OpenMP threads sleep instead of spinning: on a shared, oversubscribed CPU spinning torch
# threads slow every encode several-fold. Set before torch loads; applies to both sides alike.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402

from aaflow_adapters.langchain import AAFlowRunnable, index_documents  # noqa: E402

SERVER = """
import sys, time
from aaflow_core.serve import EchoChat, ServerThread, create_app
with ServerThread(create_app(chat=EchoChat(), latency_s=float(sys.argv[1]))) as s:
    print(s.base_url, flush=True)
    sys.stdin.read()
"""


class TimedEmbeddings(Embeddings):
    """Delegates to the real model and adds up the time spent embedding (stock side only)."""

    def __init__(self, inner: Embeddings) -> None:
        self.inner, self.seconds = inner, 0.0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        t0 = time.perf_counter()
        try:
            return self.inner.embed_documents(texts)
        finally:
            self.seconds += time.perf_counter() - t0

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


def empty_faiss(embeddings: Embeddings) -> Any:
    import faiss
    from langchain_community.docstore.in_memory import InMemoryDocstore
    from langchain_community.vectorstores import FAISS

    return FAISS(embeddings, faiss.IndexFlatL2(384), InMemoryDocstore(), {})


def load(folder: Path) -> list[Document]:
    return [Document(page_content=p.read_text(encoding="utf-8"), metadata={"source": p.name})
            for p in sorted(folder.glob("*.txt"))]


def bench_ingest(folder: Path, hf: Any, splitter: Any) -> tuple[dict[str, Any], Any]:
    t0 = time.perf_counter()
    docs = load(folder)
    t_load = time.perf_counter() - t0
    timed = TimedEmbeddings(hf)
    stock = empty_faiss(timed)
    t0 = time.perf_counter()
    chunks = splitter.split_documents(docs)
    t_chunk = time.perf_counter() - t0
    t0 = time.perf_counter()
    stock.add_documents(chunks)
    t_add = time.perf_counter() - t0
    stock_total = t_load + t_chunk + t_add

    fast = empty_faiss(hf)
    stages: dict[str, Any] = {}
    t0 = time.perf_counter()
    docs = load(folder)
    t_load2 = time.perf_counter() - t0
    t0 = time.perf_counter()
    index_documents(docs, splitter, hf, fast, timings=stages)
    t_index = time.perf_counter() - t0
    fast_total = t_load2 + t_index

    a = stock.index.reconstruct_n(0, stock.index.ntotal)
    b = fast.index.reconstruct_n(0, fast.index.ntotal)
    same_rows = all(
        stock.docstore.search(stock.index_to_docstore_id[i]).page_content
        == fast.docstore.search(fast.index_to_docstore_id[i]).page_content for i in range(len(chunks))
    )
    busy = {name: round(s.busy_s, 3) for name, s in stages.items() if not name.endswith(".rebatch")}
    return {
        "documents": len(docs), "chunks": len(chunks), "corpus_bytes": sum(len(d.page_content) for d in docs),
        "stock_s": {"load": t_load, "chunk": t_chunk, "embed": timed.seconds, "upsert": t_add - timed.seconds,
                    "total": stock_total},
        "aaflow_s": {"load": t_load2, "chunk+embed+upsert (overlapped wall)": t_index,
                     "stage_busy": busy, "total": fast_total},
        "speedup": stock_total / fast_total,
        "same_rows": same_rows, "max_abs_vector_diff": float(np.abs(a - b).max()) if len(a) else 0.0,
    }, fast


def questions(store: Any, n: int) -> list[str]:
    """Deterministic questions built from the stored chunks' opening words."""
    docs = [store.docstore.search(store.index_to_docstore_id[i]) for i in range(store.index.ntotal)]
    step = max(1, len(docs) // n)
    out = []
    for i in range(n):
        words = docs[(i * step) % len(docs)].page_content.split()[:8]
        out.append(f"What does the documentation say about {' '.join(words)}? (#{i})")
    return out


def rag_chain(store: Any, base_url: str) -> Any:
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough
    from langchain_openai import ChatOpenAI

    def format_docs(docs: list[Document]) -> str:
        return "\n\n".join(d.page_content for d in docs)

    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the context.\n\n{context}"), ("human", "{question}")]
    )
    model = ChatOpenAI(base_url=base_url, api_key="not-needed", model="echo", max_retries=0, temperature=0)
    retriever = store.as_retriever(search_kwargs={"k": 4})
    return ({"context": retriever | RunnableLambda(format_docs), "question": RunnablePassthrough()}
            | prompt | model | StrOutputParser())


def timed(fn: Any, repeats: int) -> tuple[list[float], list[float], Any]:
    """Wall seconds and this process's CPU seconds per run (CPU is the steadier figure on a shared machine)."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return walls, cpus, out


def bench_rag(store: Any, n: int, latency: float, in_flight: int, repeats: int) -> dict[str, Any]:
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(latency)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        base_url = server.stdout.readline().strip()  # type: ignore[union-attr]
        chain = rag_chain(store, base_url)
        fast = AAFlowRunnable(chain, max_concurrency=in_flight)
        qs = questions(store, n)
        chain.batch(qs[:8]), fast.batch(qs[:8])  # warm both clients and code paths
        stock_default, stock_default_cpu, a = timed(lambda: chain.batch(qs), repeats)
        stock_tuned, stock_tuned_cpu, b = timed(lambda: chain.batch(qs, {"max_concurrency": in_flight}), repeats)
        aaflow, aaflow_cpu, c = timed(lambda: fast.batch(qs), repeats)
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(timeout=30)
    med = statistics.median
    return {
        "questions": n, "latency_s": latency, "in_flight_limit": in_flight, "repeats": repeats,
        "stock_default_s": stock_default, "stock_tuned_s": stock_tuned, "aaflow_s": aaflow,
        "cpu_s": {"stock_default": stock_default_cpu, "stock_tuned": stock_tuned_cpu, "aaflow": aaflow_cpu},
        "speedup_vs_stock_default": med(stock_default) / med(aaflow),
        "speedup_vs_stock_tuned": med(stock_tuned) / med(aaflow),
        "identical_answers": a == b == c,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/langchain.json"))
    parser.add_argument("--quick", action="store_true", help="small corpus and 40 questions")
    parser.add_argument("--corpus-mb", type=float, default=None)
    parser.add_argument("--questions", type=int, default=None)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--in-flight", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    mb = args.corpus_mb or (0.1 if args.quick else 0.5)
    n = args.questions or (40 if args.quick else 200)
    repeats = args.repeats or (1 if args.quick else 3)

    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from aaflow_core.models.embedding import bundled_model_path
    from aaflow_core.pipelines.corpus import write_stdlib_corpus

    hf = HuggingFaceEmbeddings(model_name=str(bundled_model_path()))
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=100)
    with tempfile.TemporaryDirectory() as tmp:
        write_stdlib_corpus(tmp, int(mb * 2**20))
        ingest, store = bench_ingest(Path(tmp), hf, splitter)
    print(f"ingest: {ingest['chunks']} chunks, speedup {ingest['speedup']:.2f}x", flush=True)
    rag = bench_rag(store, n, args.latency, args.in_flight, repeats)
    print(f"rag: {n} questions, {rag['speedup_vs_stock_default']:.1f}x vs stock defaults, "
          f"{rag['speedup_vs_stock_tuned']:.2f}x vs stock max_concurrency={args.in_flight}, "
          f"identical={rag['identical_answers']}", flush=True)
    machine = {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
               "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}
    result = {"machine": machine,
              "ingest": ingest, "rag": rag, "quick": args.quick}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
