"""The five cases of the side-by-side suite, each a function `Config -> dict` (JSON-ready).

Every case writes its corpus once, starts its sides in worker processes (harness.side_by_side),
and reports each side's runs with median and spread, plus whether the sides' outputs agree.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.checkpoint_bench import case_checkpoint
from benchmarks.harness import Pool, side_by_side, speedup

LC, LI, NATIVE = "benchmarks.langchain_bench", "benchmarks.llamaindex_bench", "benchmarks.ingest"


@dataclass(frozen=True)
class Config:
    """What a suite run depends on (every field lands in the JSON)."""

    quick: bool = False
    repeats: int = 3
    ingest_mb: float = 0.2
    remote_mb: float = 0.08
    rag_mb: float = 0.05
    determinism_mb: float = 0.04
    determinism_runs: int = 3
    embed_latency_s: float = 0.2
    embed_max_inputs: int = 64
    questions: int = 120
    chat_latency_s: float = 0.3
    chat_tokens_per_s: float = 100.0
    chat_max_concurrency: int = 64
    in_flight: int = 128
    local_llm: bool = True  # case 3 again with the real SmolLM2 behind the endpoint (~20 s to load)
    llm_questions: int = 8  # prompts carry 4 retrieved chunks: 16 questions took 43-55 s a pass on 2 cores
    llm_max_tokens: int = 16
    llm_repeats: int = 1
    max_ranks: int = 0  # 0: as many as the machine has cores
    threads: int = 2
    timeout_s: float = 900.0

    @staticmethod
    def preset(quick: bool, **overrides: Any) -> "Config":
        base = Config(quick=True, repeats=1, ingest_mb=0.02, remote_mb=0.015, rag_mb=0.015, determinism_mb=0.01,
                      determinism_runs=2, questions=40, local_llm=False, llm_questions=4,
                      llm_max_tokens=8) if quick else Config()
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def corpus(folder: Path, mb: float) -> dict[str, Any]:
    from aaflow_core.pipelines.corpus import write_stdlib_corpus

    budget = int(mb * 2**20)
    files = write_stdlib_corpus(folder, budget)
    for f in files:  # a tiny corpus is cut to size (whole pydoc pages are 30-200 KB each)
        text = f.read_text(encoding="utf-8")
        f.write_text(text[: max(0, budget)], encoding="utf-8")
        budget -= len(text)
    files = [f for f in files if f.stat().st_size]
    for f in set(folder.glob("*.txt")) - set(files):
        f.unlink()
    return {"path": str(folder), "files": len(files), "bytes": sum(f.stat().st_size for f in files),
            "source": "Python stdlib pydoc pages (aaflow corpus)"}


def agreement(result: dict[str, Any], pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Same chunk texts? How far apart are the vectors (max |diff|)? Vector matrices leave the JSON here."""
    first = {name: next((r for r in side["runs"] if "texts_sha256" in r), {}) for name, side in result.items()}
    out = {}
    for a, b in pairs:
        ra, rb = first.get(a, {}), first.get(b, {})
        same = bool(ra) and ra.get("texts_sha256") == rb.get("texts_sha256")
        va, vb = ra.get("vectors"), rb.get("vectors")
        diff = float(np.abs(va - vb).max()) if same and va is not None and vb is not None and va.size else None
        out[f"{a} vs {b}"] = {"same_texts": same, "max_abs_vector_diff": diff}
    for side in result.values():
        for r in side["runs"]:
            r.pop("vectors", None)
    return out


def ratios(result: dict[str, Any], pairs: list[tuple[str, str]], metric: str = "wall_s") -> dict[str, float | None]:
    return {f"{ours} vs {base}": speedup(result, base, ours, metric) for base, ours in pairs}


def case_ingest(cfg: Config, pool: Pool, log: Callable[[str], None]) -> dict[str, Any]:
    """1. RAG ingestion (load, chunk, embed, upsert) on a real corpus, local model, every side."""
    with tempfile.TemporaryDirectory() as tmp:
        info = corpus(Path(tmp) / "corpus", cfg.ingest_mb)
        c = info["path"]
        sides = {
            "langchain stock": (f"{LC}:ingest_side", {"corpus": c, "aaflow": False}),
            "langchain aaflow": (f"{LC}:ingest_side", {"corpus": c, "aaflow": True}),
            "aaflow native": (f"{NATIVE}:native_side", {"corpus": c, "threads": cfg.threads}),
            "model floor": (f"{NATIVE}:floor_side", {"corpus": c, "threads": cfg.threads}),
            "llamaindex stock": (f"{LI}:ingest_side", {"corpus": c, "config": "stock_run"}),
            "llamaindex aaflow": (f"{LI}:ingest_side", {"corpus": c, "config": "aaflow_run"}),
        }
        if not cfg.quick:
            sides["llamaindex stock num_workers=2"] = (f"{LI}:ingest_side", {"corpus": c, "config": "stock_run_workers2"})
        result = side_by_side(sides, cfg.repeats, pool, log=log)
    pairs = [("langchain stock", "langchain aaflow"), ("langchain stock", "aaflow native"),
             ("llamaindex stock", "llamaindex aaflow"), ("llamaindex stock num_workers=2", "llamaindex aaflow")]
    return {"corpus": info, "sides": result,
            "agreement": agreement(result, [p for p in pairs if p[0] in result] +
                                   [("aaflow native", "model floor")]),
            "speedups": ratios(result, [p for p in pairs if p[0] in result] + [("model floor", "aaflow native")])}


def case_remote(cfg: Config, pool: Pool, log: Callable[[str], None]) -> dict[str, Any]:
    """2. Embedding + upsert through an OpenAI-compatible embeddings server on loopback (real model behind it)."""
    from aaflow_core.serve import STATS, ModelEmbeddings, ServerThread, create_app

    with tempfile.TemporaryDirectory() as tmp:
        info = corpus(Path(tmp) / "corpus", cfg.remote_mb)
        app = create_app(embeddings=ModelEmbeddings(threads=cfg.threads), latency_s=cfg.embed_latency_s,
                         max_inputs=cfg.embed_max_inputs)
        with ServerThread(app) as server:
            c, url = info["path"], server.base_url
            sides = {
                "langchain stock": (f"{LC}:ingest_side", {"corpus": c, "aaflow": False, "base_url": url,
                                                          "chunk_size": cfg.embed_max_inputs}),
                "langchain aaflow": (f"{LC}:ingest_side", {"corpus": c, "aaflow": True, "base_url": url,
                                                           "chunk_size": cfg.embed_max_inputs}),
            }
            for config in ("stock_run", "aaflow_run") + (() if cfg.quick else ("stock_arun", "aaflow_arun")):
                sides[f"llamaindex {config.replace('_', ' ')}"] = (
                    f"{LI}:ingest_side", {"corpus": c, "config": config, "kind": "remote", "base_url": url})
            result = side_by_side(sides, cfg.repeats, pool, log=log)
            stats = asdict(app[STATS])
    pairs = [("langchain stock", "langchain aaflow"), ("llamaindex stock run", "llamaindex aaflow run"),
             ("llamaindex stock arun", "llamaindex aaflow run"), ("llamaindex stock arun", "llamaindex aaflow arun")]
    pairs = [p for p in pairs if p[0] in result and p[1] in result]
    return {"corpus": info, "server": {"latency_s": cfg.embed_latency_s, "max_inputs": cfg.embed_max_inputs,
                                       "stats": stats}, "sides": result,
            "agreement": agreement(result, pairs), "speedups": ratios(result, pairs)}


def rag_sides(c: str, url: str, n: int, cfg: Config, max_tokens: int | None) -> dict[str, tuple[str, dict[str, Any]]]:
    common = {"corpus": c, "base_url": url, "n": n, "in_flight": cfg.in_flight, "max_tokens": max_tokens}
    return {f"chain.batch {'defaults' if m == 'stock_default' else f'max_concurrency={cfg.in_flight}'}"
            if m != "aaflow" else "AAFlowRunnable": (f"{LC}:rag_side", {**common, "mode": m})
            for m in ("stock_default", "stock_tuned", "aaflow")}


def rag_summary(result: dict[str, Any]) -> dict[str, Any]:
    names = list(result)
    hashes = {r.get("answers_sha256") for s in result.values() for r in s["runs"] if "answers_sha256" in r}
    out: dict[str, Any] = {"identical_answers": len(hashes) == 1, "speedups": ratios(result, [(n, names[-1]) for n in names[:-1]])}
    for metric in ("latency_p50_s", "latency_p95_s", "questions_per_s", "cpu_s"):
        out[metric] = {n: float(np.median([r[metric] for r in s["runs"] if r.get(metric) is not None] or [np.nan]))
                       for n, s in result.items()}
    return out


def case_rag(cfg: Config, pool: Pool, log: Callable[[str], None]) -> dict[str, Any]:
    """3. Batch RAG question answering against an OpenAI-compatible chat endpoint (EchoChat; local LLM if present)."""
    from aaflow_core.serve import STATS, EchoChat, ServerThread, create_app

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        info = corpus(Path(tmp) / "corpus", cfg.rag_mb)
        app = create_app(chat=EchoChat(tokens_per_s=cfg.chat_tokens_per_s), latency_s=cfg.chat_latency_s,
                         max_concurrency=cfg.chat_max_concurrency)
        with ServerThread(app) as server:
            result = side_by_side(rag_sides(info["path"], server.base_url, cfg.questions, cfg, None), cfg.repeats,
                                  pool, log=log)
        out["echo"] = {"server": {"backend": "EchoChat", "latency_s": cfg.chat_latency_s,
                                  "tokens_per_s": cfg.chat_tokens_per_s, "max_concurrency": cfg.chat_max_concurrency,
                                  "stats": asdict(app[STATS])},
                       "questions": cfg.questions, "sides": result, **rag_summary(result)}
        if not cfg.local_llm:
            out["local_llm"] = {"skipped": "not run (--no-local-llm; the quick preset's default)"}
        else:
            llm_app = local_llm_app(cfg)
            with ServerThread(llm_app) as server:
                result = side_by_side(rag_sides(info["path"], server.base_url, cfg.llm_questions, cfg,
                                                cfg.llm_max_tokens), cfg.llm_repeats, pool, log=log)
            out["local_llm"] = {"server": {"backend": "aaflow serve-llm (SmolLM2, greedy)",
                                           "max_tokens": cfg.llm_max_tokens, "stats": asdict(llm_app[STATS])},
                                "questions": cfg.llm_questions, "sides": result, **rag_summary(result)}
    return {"corpus": info, "in_flight_limit": cfg.in_flight, **out}


def local_llm_app(cfg: Config) -> Any:
    """`aaflow serve-llm`'s application (chat only): the real SmolLM2 behind the endpoint."""
    from aaflow_core.models.llm import LocalLLM
    from aaflow_core.serve.local_llm import local_llm_app as make

    return make(LocalLLM(threads=cfg.threads), embeddings=False, default_max_tokens=cfg.llm_max_tokens)


def case_scaling(cfg: Config, pool: Pool, log: Callable[[str], None]) -> dict[str, Any]:
    """4. Case 1's native ingest on 1..N MPI ranks (threads per rank = cores / ranks)."""
    from benchmarks.scaling_case import scaling

    with tempfile.TemporaryDirectory() as tmp:
        info = corpus(Path(tmp) / "corpus", cfg.ingest_mb)
        n = cfg.max_ranks or os.cpu_count() or 1
        return {"corpus": info, **scaling(Path(info["path"]), list(range(1, n + 1)), cfg.repeats, Path(tmp), log)}


def case_determinism(cfg: Config, pool: Pool, log: Callable[[str], None]) -> dict[str, Any]:
    """5. The same ingestion run several times and under perturbed timing: how many output hashes differ."""
    with tempfile.TemporaryDirectory() as tmp:
        info = corpus(Path(tmp) / "corpus", cfg.determinism_mb)
        c, runs = info["path"], cfg.determinism_runs
        sides = {
            "aaflow native": ("benchmarks.determinism:native", {"corpus": c, "runs": runs, "threads": cfg.threads}),
            "langchain": ("benchmarks.determinism:langchain", {"corpus": c, "runs": runs}),
            "llamaindex": ("benchmarks.determinism:llamaindex", {"corpus": c, "runs": runs, "quick": cfg.quick}),
        }
        result = side_by_side(sides, 1, pool, log=log)
    return {"corpus": info, "runs_per_variant": runs,
            "sides": {name: s["runs"][0] for name, s in result.items()}}


CASES: dict[str, Callable[[Config, Pool, Callable[[str], None]], dict[str, Any]]] = {
    "ingest": case_ingest, "remote": case_remote, "rag": case_rag, "scaling": case_scaling,
    "determinism": case_determinism, "checkpoint": case_checkpoint,
}
