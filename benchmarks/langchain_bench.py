"""Stock LangChain vs aaflow, side by side in one run, same inputs; results as JSON.

1. Ingestion: `store.add_documents(splitter.split_documents(docs))` vs `index_documents(...)` on a
   real corpus (stdlib pydoc pages), phases load/chunk/embed/upsert, contents compared.
2. RAG: N questions through `chain.batch` (defaults, and `max_concurrency` raised to aaflow's
   in-flight limit) vs `AAFlowRunnable(chain).batch`, with the chat model behind an
   OpenAI-compatible server (EchoChat, fixed latency) in a subprocess on loopback; answers compared.

    python benchmarks/langchain_bench.py [--quick] [--out benchmarks/results/langchain.json]

The `*_side` functions are the suite's sides for the same measurements (`python -m benchmarks`).
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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
Result = dict[str, Any]


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


@functools.cache
def local_parts() -> tuple[Any, Any]:
    """The user's HuggingFaceEmbeddings (bundled model, warmed) and splitter, loaded once per process."""
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from aaflow_core.models.embedding import bundled_model_path

    hf = HuggingFaceEmbeddings(model_name=str(bundled_model_path()))
    hf.embed_documents(["warm up"] * 8)
    return hf, RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=100)


def remote_embeddings(base_url: str, chunk_size: int) -> Embeddings:
    """OpenAIEmbeddings against the loopback server; `chunk_size` = inputs per request (server limit)."""
    from langchain_openai import OpenAIEmbeddings

    return OpenAIEmbeddings(base_url=base_url, api_key="not-needed", model="minilm", chunk_size=chunk_size,
                            check_embedding_ctx_length=False, max_retries=0)


def store_digest(store: Any) -> dict[str, Any]:
    """Texts in index order (hash), the vectors, and a hash over ids+texts+vectors (what a user persists)."""
    ids = [store.index_to_docstore_id[i] for i in range(store.index.ntotal)]
    texts = [store.docstore.search(i).page_content for i in ids]
    vectors = store.index.reconstruct_n(0, store.index.ntotal)
    h, full = hashlib.sha256(), hashlib.sha256()
    for i, t in zip(ids, texts):
        h.update(t.encode() + b"\0")
        full.update(i.encode() + b"\0" + t.encode() + b"\0")
    full.update(vectors.tobytes())
    content = hashlib.sha256(h.digest() + vectors.tobytes()).hexdigest()
    return {"texts_sha256": h.hexdigest(), "content_sha256": content, "output_sha256": full.hexdigest(),
            "rows": len(ids), "vectors": vectors}


def stock_ingest(folder: Path, embeddings: Embeddings, splitter: Any) -> tuple[Result, Any]:
    """The stock user's code, phase by phase: load, split, add_documents (embed + upsert)."""
    t0 = time.perf_counter()
    docs = load(folder)
    t_load = time.perf_counter() - t0
    timed = TimedEmbeddings(embeddings)
    store = empty_faiss(timed)
    t0 = time.perf_counter()
    chunks = splitter.split_documents(docs)
    t_chunk = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.add_documents(chunks)
    t_add = time.perf_counter() - t0
    phases = {"load": t_load, "chunk": t_chunk, "embed": timed.seconds, "upsert": t_add - timed.seconds}
    return {"wall_s": t_load + t_chunk + t_add, "phases_s": phases, "overlapped": False,
            "documents": len(docs), "corpus_bytes": sum(len(d.page_content) for d in docs)}, store


def aaflow_ingest(folder: Path, embeddings: Embeddings, splitter: Any) -> tuple[Result, Any]:
    """The same, with the one-line swap to `index_documents` (split/embed/upsert overlapped)."""
    stages: dict[str, Any] = {}
    store = empty_faiss(embeddings)
    t0 = time.perf_counter()
    docs = load(folder)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    index_documents(docs, splitter, embeddings, store, timings=stages)
    t_index = time.perf_counter() - t0
    busy = {name: s.busy_s for name, s in stages.items() if not name.endswith(".rebatch")}
    phases = {"load": t_load, "chunk": busy.get("split", 0.0), "embed": busy.get("embed", 0.0),
              "upsert": busy.get("upsert", 0.0)}
    return {"wall_s": t_load + t_index, "phases_s": phases, "overlapped": True, "documents": len(docs)}, store


def ingest_side(corpus: str, aaflow: bool, base_url: str | None = None, chunk_size: int = 64,
                keep_vectors: bool = True) -> Callable[[], Result]:
    """Suite side: stock or aaflow ingestion, local model (default) or the remote endpoint."""
    if base_url is None:
        hf, splitter = local_parts()
    else:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        hf = remote_embeddings(base_url, chunk_size)
        hf.embed_documents(["warm up"])
        splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=100)
    first = [keep_vectors]

    def run() -> Result:
        out, store = (aaflow_ingest if aaflow else stock_ingest)(Path(corpus), hf, splitter)
        out.update(store_digest(store))
        if not first[0]:
            del out["vectors"]
        first[0] = False
        return out

    return run


def bench_ingest(folder: Path, hf: Any, splitter: Any) -> tuple[Result, Any]:
    stock_out, stock = stock_ingest(folder, hf, splitter)
    fast_out, fast = aaflow_ingest(folder, hf, splitter)
    a, b = store_digest(stock), store_digest(fast)
    return {
        "documents": stock_out["documents"], "chunks": a["rows"], "corpus_bytes": stock_out["corpus_bytes"],
        "stock_s": {**stock_out["phases_s"], "total": stock_out["wall_s"]},
        "aaflow_s": {"stage_busy": fast_out["phases_s"], "total": fast_out["wall_s"]},
        "speedup": stock_out["wall_s"] / fast_out["wall_s"],
        "same_rows": a["texts_sha256"] == b["texts_sha256"],
        "max_abs_vector_diff": float(np.abs(a["vectors"] - b["vectors"]).max()) if a["rows"] else 0.0,
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


def rag_chain(store: Any, base_url: str, max_tokens: int | None = None) -> Any:
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough
    from langchain_openai import ChatOpenAI

    def format_docs(docs: list[Document]) -> str:
        return "\n\n".join(d.page_content for d in docs)

    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the context.\n\n{context}"), ("human", "{question}")]
    )
    model = ChatOpenAI(base_url=base_url, api_key="not-needed", model="echo", max_retries=0, temperature=0,
                       max_tokens=max_tokens, timeout=600)
    retriever = store.as_retriever(search_kwargs={"k": 4})
    return ({"context": retriever | RunnableLambda(format_docs), "question": RunnablePassthrough()}
            | prompt | model | StrOutputParser())


def rag_side(corpus: str, base_url: str, mode: str, n: int, in_flight: int = 128,
             max_tokens: int | None = None) -> Callable[[], Result]:
    """Suite side: `mode` is stock_default | stock_tuned | aaflow; store built (untimed) from `corpus`."""
    hf, splitter = local_parts()
    _, store = aaflow_ingest(Path(corpus), hf, splitter)
    chain = rag_chain(store, base_url, max_tokens)
    runner = AAFlowRunnable(chain, max_concurrency=in_flight) if mode == "aaflow" else chain
    config: dict[str, Any] = {"max_concurrency": in_flight} if mode == "stock_tuned" else {}
    qs = questions(store, n)
    runner.batch(qs[:4], dict(config))  # warm the client and code paths

    def run() -> Result:
        """Throughput from `batch`; per-question latency from `batch_as_completed` (batch returns all at once)."""
        t0, c0 = time.perf_counter(), time.process_time()
        answers = runner.batch(qs, dict(config))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        t1, lat, same = time.perf_counter(), [], True
        for i, answer in runner.batch_as_completed(qs, dict(config)):
            lat.append(time.perf_counter() - t1)
            same = same and answer == answers[i]
        return {"wall_s": wall, "cpu_s": cpu, "questions": n, "questions_per_s": n / wall,
                "as_completed_wall_s": time.perf_counter() - t1, "as_completed_same_answers": same,
                "latency_p50_s": float(np.percentile(lat, 50)), "latency_p95_s": float(np.percentile(lat, 95)),
                "answers_sha256": hashlib.sha256("\0".join(answers).encode()).hexdigest()}

    return run


def timed(fn: Any, repeats: int) -> tuple[list[float], list[float], Any]:
    """Wall seconds and this process's CPU seconds per run (CPU is the steadier figure on a shared machine)."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return walls, cpus, out


def bench_rag(store: Any, n: int, latency: float, in_flight: int, repeats: int) -> Result:
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

    from aaflow_core.pipelines.corpus import write_stdlib_corpus

    hf, splitter = local_parts()
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
