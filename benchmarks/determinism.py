"""Case 5: run the same ingestion several times, and under different thread timings; count output hashes.

Each function is a suite side (set-up returns one run) that ingests the same corpus in several
variants and reports, per variant, the hash of everything a user would persist (ids, texts,
vectors) and of the contents alone (texts, vectors). aaflow promises: same input + same
resources => the same bits, whatever the timing. The stock frameworks are reported as they are.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks.ingest import cpu_hog, native_side

Result = dict[str, Any]


def summarise(variants: list[Result], started: float, why: str) -> Result:
    outputs = {v["output_sha256"] for v in variants}
    contents = {v.get("content_sha256", v["output_sha256"]) for v in variants}
    return {"wall_s": time.perf_counter() - started, "variants": variants, "runs": len(variants),
            "distinct_output_hashes": len(outputs), "distinct_content_hashes": len(contents), "why": why}


def _keep(name: str, r: Result) -> Result:
    return {"variant": name, **{k: r[k] for k in ("output_sha256", "content_sha256", "rows", "wall_s") if k in r}}


def native(corpus: str, runs: int = 3, threads: int = 2) -> Callable[[], Result]:
    """aaflow ingest: `runs` x threads backend, the serial backend, and threads with a CPU-hog thread."""
    plans = [("threads", False)] * runs + [("serial", False), ("threads", True)]
    sides = {(b, h): native_side(corpus, threads=threads, backend=b, hog=h, vectors=False) for b, h in set(plans)}

    def run() -> Result:
        t0 = time.perf_counter()
        variants = [_keep(f"backend={b}{' + cpu hog' if h else ''}", sides[(b, h)]()) for b, h in plans]
        return summarise(variants, t0, "batch cuts, embedding micro-batches and output order depend only on the "
                                       "input and the declared resources; chunk ids are content hashes")

    return run


def langchain(corpus: str, runs: int = 3) -> Callable[[], Result]:
    """Stock `FAISS.add_documents(splitter.split_documents(docs))` with HuggingFaceEmbeddings, plus one hog run."""
    from benchmarks.langchain_bench import ingest_side

    side = ingest_side(corpus, aaflow=False, keep_vectors=False)

    def run() -> Result:
        t0 = time.perf_counter()
        variants = [_keep("stock", side()) for _ in range(runs)]
        with cpu_hog(True):
            variants.append(_keep("stock + cpu hog", side()))
        return summarise(variants, t0, "FAISS.add_documents gives each chunk a random uuid4 docstore id; "
                                       "texts and vectors are the same on every run")

    return run


def llamaindex(corpus: str, runs: int = 3, quick: bool = False) -> Callable[[], Result]:
    """Stock IngestionPipeline: default ids, a deterministic id_func, and num_workers=2 (spawn pool)."""
    from benchmarks.llamaindex_bench import ingest_side

    configs = {"stock default ids": ingest_side(corpus, "stock_run", keep_vectors=False),
               "stock id_func": ingest_side(corpus, "stock_run", id_func=True, keep_vectors=False),
               "aaflow id_func": ingest_side(corpus, "aaflow_run", id_func=True, keep_vectors=False)}
    workers = None if quick else ingest_side(corpus, "stock_run_workers2", id_func=True, keep_vectors=False)

    def run() -> Result:
        t0 = time.perf_counter()
        per: dict[str, list[Result]] = {}
        for name, side in configs.items():
            per[name] = [_keep(name, side()) for _ in range(runs)]
            with cpu_hog(True):
                per[name].append(_keep(f"{name} + cpu hog", side()))
        if workers is not None:
            per["stock id_func num_workers=2"] = [_keep("stock id_func num_workers=2", workers())]
        out = {name: summarise(v, t0, "") for name, v in per.items()}
        for v in out.values():
            v.pop("wall_s")
        base = per["stock id_func"][0]["content_sha256"]
        return {"wall_s": time.perf_counter() - t0, "configs": out,
                "same_content_as_stock_id_func": {n: v[0]["content_sha256"] == base for n, v in per.items()},
                "why": "default node ids are uuid4, new for every node on every run (llama_index issue 9338); "
                       "texts and vectors do not depend on ids"}

    return run
