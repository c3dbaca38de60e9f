"""The cases of the side-by-side suite, each a function `Config -> dict` (JSON-ready).

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
from benchmarks.harness import Pool, median, side_by_side, speedup
from benchmarks.langchain_graphs import case_graphs

LC, LI, NATIVE = "benchmarks.langchain_bench", "benchmarks.llamaindex_bench", "benchmarks.ingest"
REMOTE_LC = "benchmarks.langchain_remote"


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
    memory_agents: int = 100  # case 9: agents with a LangGraph store, each turn a search and a put
    memory_turns: int = 3
    memory_micro_batch: int = 50
    embed16_mb: float = 0.9  # case 8: corpus for >= 1000 chunks embedded 16 per request
    agent_inputs: int = 100  # case 6: create_agent inputs (tool call, then answer); budget = this many
    chain_questions: int = 200  # case 7: prompt | ChatOpenAI | parser, no retrieval
    chain_questions_large: int = 1000  # case 7 again without stock defaults (0: skip)
    graph_inputs: int = 100  # case 10: StateGraph and wrapped-model chains, one model call per input
    max_ranks: int = 0  # 0: as many as the machine has cores
    threads: int = 2
    timeout_s: float = 900.0

    @staticmethod
    def preset(quick: bool, **overrides: Any) -> "Config":
        base = Config(quick=True, repeats=1, ingest_mb=0.02, remote_mb=0.015, rag_mb=0.015, determinism_mb=0.01,
                      determinism_runs=2, questions=40, local_llm=False, llm_questions=4, memory_turns=1,
                      llm_max_tokens=8, agent_inputs=40, chain_questions=80, graph_inputs=40, chain_questions_large=0,
                      embed16_mb=0.2) if quick else Config()
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


def case_agent_memory(cfg: Config, pool: Pool, log: Callable[[str], None]) -> dict[str, Any]:
    """6. Agent memory: N create_agent agents, a store search before each model call and a put after it."""
    from benchmarks.memory_agents import agreement
    from aaflow_core.serve import STATS, ModelEmbeddings, ServerThread, create_app

    mem = "benchmarks.memory_agents"
    # a micro-batch that divides the agent count packs each wave of agents into whole batches
    common = {"users": cfg.memory_agents, "turns": cfg.memory_turns, "micro_batch": cfg.memory_micro_batch}
    out: dict[str, Any] = {"agents": cfg.memory_agents, "turns": cfg.memory_turns,
                           "micro_batch": cfg.memory_micro_batch, "operations": 2 * cfg.memory_agents * cfg.memory_turns}
    local = side_by_side({"InMemoryStore": (f"{mem}:side", {**common, "store": "stock"}),
                          "AAFlowStore": (f"{mem}:side", {**common, "store": "aaflow"}),
                          "model floor": (f"{mem}:model_floor", common)}, cfg.repeats, pool, log=log)
    app = create_app(embeddings=ModelEmbeddings(threads=cfg.threads), latency_s=cfg.embed_latency_s,
                     max_inputs=cfg.embed_max_inputs)
    with ServerThread(app) as server:
        url = {"base_url": server.base_url, "max_inputs": cfg.embed_max_inputs}
        far = side_by_side({"InMemoryStore": (f"{mem}:side", {**common, **url, "store": "stock"}),
                            "AAFlowStore": (f"{mem}:side", {**common, **url, "store": "aaflow", "max_in_flight": 4}),
                            "bare aiohttp floor": (f"{mem}:remote_floor", {"users": cfg.memory_agents,
                                                                           "turns": cfg.memory_turns, **url})},
                           cfg.repeats, pool, log=log)
        stats = asdict(app[STATS])
    for name, result in (("local", local), ("remote", far)):
        first = {n: next((r for r in s["runs"] if "hits" in r), {}) for n, s in result.items()}
        out[name] = {"sides": result, "agreement": agreement(first["InMemoryStore"], first["AAFlowStore"]),
                     "embedding_calls": {n: [r.get("embedding_calls") for r in s["runs"]] for n, s in result.items()}}
        for s in result.values():
            for r in s["runs"]:
                r.pop("hits", None)
    out["remote"]["server"] = {"latency_s": cfg.embed_latency_s, "max_inputs": cfg.embed_max_inputs, "stats": stats}
    out["speedups"] = {"local: AAFlowStore vs InMemoryStore": speedup(local, "InMemoryStore", "AAFlowStore"),
                       "remote: AAFlowStore vs InMemoryStore": speedup(far, "InMemoryStore", "AAFlowStore")}
    return out


def remote_summary(result: dict[str, Any], pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Same answers on every side? Ratios, and each side's latency percentiles and CPU."""
    hashes = {r.get("answers_sha256") for s in result.values() for r in s["runs"] if "answers_sha256" in r}
    out: dict[str, Any] = {"identical_answers": len(hashes) == 1, "speedups": ratios(result, pairs)}
    for metric in ("latency_p50_s", "latency_p95_s", "cpu_s"):
        out[metric] = {n: float(np.median([r[metric] for r in s["runs"] if r.get(metric) is not None] or [np.nan]))
                       for n, s in result.items()}
    return out


def case_agents(cfg: Config, pool: Pool, log: Callable[[str], None]) -> dict[str, Any]:
    """6. `create_agent` + a tool, the model behind a loopback endpoint: stock batch (defaults, tuned) and
    abatch vs aaflow's; each async side in a process of its own (langchain-openai's cached client)."""
    from aaflow_core.serve import ServerThread
    from benchmarks.langchain_remote import tool_app

    n = cfg.agent_inputs
    with ServerThread(tool_app(cfg.chat_latency_s)) as server:
        common = {"base_url": server.base_url, "n": n, "in_flight": n}
        side = f"{REMOTE_LC}:agent_side"
        sides: dict[str, tuple[Any, ...]] = {
            "agent.batch defaults": (side, {**common, "mode": "stock_default"}),
            f"agent.batch max_concurrency={n}": (side, {**common, "mode": "stock_tuned"}),
            "AAFlowRunnable.batch": (side, {**common, "mode": "aaflow"}),
            "agent.abatch": (side, {**common, "mode": "stock_abatch"}, "langchain-async-stock"),
            "AAFlowRunnable.abatch": (side, {**common, "mode": "aaflow_abatch"}, "langchain-async-aaflow"),
        }
        result = side_by_side(sides, cfg.repeats, pool, log=log)
    pairs = [("agent.batch defaults", "AAFlowRunnable.batch"), (f"agent.batch max_concurrency={n}", "AAFlowRunnable.batch"),
             ("agent.abatch", "AAFlowRunnable.abatch")]
    return {"inputs": n, "model_calls_per_input": 2, "model_latency_s": cfg.chat_latency_s, "in_flight_limit": n,
            "sides": result, **remote_summary(result, pairs)}


def chain_sides(url: str, n: int, defaults: bool) -> dict[str, tuple[Any, ...]]:
    common = {"base_url": url, "n": n, "in_flight": n}
    sides: dict[str, tuple[Any, ...]] = {"chain.batch defaults": (f"{REMOTE_LC}:chain_side", {**common, "mode": "stock_default"})}
    if not defaults:
        sides.clear()
    sides[f"chain.batch max_concurrency={n}"] = (f"{REMOTE_LC}:chain_side", {**common, "mode": "stock_tuned"})
    sides["AAFlowRunnable.batch"] = (f"{REMOTE_LC}:chain_side", {**common, "mode": "aaflow"})
    sides["bare aiohttp floor"] = (f"{REMOTE_LC}:floor_side", {"base_url": url, "n": n}, "aaflow")
    return sides


def case_chain(cfg: Config, pool: Pool, log: Callable[[str], None]) -> dict[str, Any]:
    """7. `prompt | ChatOpenAI | StrOutputParser`, no retrieval, EchoChat on loopback: stock, aaflow and
    the floor (the same requests from a bare aiohttp client, all in flight) in the same run."""
    from aaflow_core.serve import STATS, EchoChat, ServerThread, create_app

    out: dict[str, Any] = {"latency_s": cfg.chat_latency_s}
    for n, defaults in ((cfg.chain_questions, True), (cfg.chain_questions_large, False)):
        if not n:
            continue
        app = create_app(chat=EchoChat(), latency_s=cfg.chat_latency_s)
        with ServerThread(app) as server:
            result = side_by_side(chain_sides(server.base_url, n, defaults), cfg.repeats, pool, log=log)
        tuned = f"chain.batch max_concurrency={n}"
        pairs = [(tuned, "AAFlowRunnable.batch")]
        if defaults:
            pairs.insert(0, ("chain.batch defaults", "AAFlowRunnable.batch"))
        floor, ours = median(result, "bare aiohttp floor"), median(result, "AAFlowRunnable.batch")
        out[f"{n} questions"] = {"sides": result, "server": asdict(app[STATS]), **remote_summary(result, pairs),
                                 "aaflow_over_floor": ours / floor if floor and ours else None}
    return out


def case_lc_embed(cfg: Config, pool: Pool, log: Callable[[str], None]) -> dict[str, Any]:
    """8. LangChain ingestion with `OpenAIEmbeddings(chunk_size=16)` against a hash-embeddings endpoint (a
    hosted API's latency, 80 ms + 0.2 ms per text): stock add_documents, index_documents, and the floor."""
    from aaflow_core.serve import STATS, HashEmbeddings, ServerThread, create_app

    with tempfile.TemporaryDirectory() as tmp:
        info = corpus(Path(tmp) / "corpus", cfg.embed16_mb)
        app = create_app(embeddings=HashEmbeddings(dim=384, item_s=0.0002), latency_s=0.08, max_inputs=16)
        with ServerThread(app) as server:
            common = {"corpus": info["path"], "base_url": server.base_url, "chunk_size": 16}
            sides: dict[str, tuple[Any, ...]] = {
                "FAISS add_documents": (f"{LC}:ingest_side", {**common, "aaflow": False}),
                "index_documents": (f"{LC}:ingest_side", {**common, "aaflow": True}),
                "bare aiohttp floor": (f"{REMOTE_LC}:embed_floor_side", common, "aaflow"),
            }
            result = side_by_side(sides, cfg.repeats, pool, log=log)
            stats = asdict(app[STATS])
    pairs = [("FAISS add_documents", "index_documents"), ("bare aiohttp floor", "index_documents")]
    floor, ours = median(result, "bare aiohttp floor"), median(result, "index_documents")
    return {"corpus": info, "server": {"latency_s": 0.08, "item_s": 0.0002, "max_inputs": 16, "stats": stats},
            "sides": result, "agreement": agreement(result, pairs),
            "speedups": ratios(result, pairs[:1]), "aaflow_over_floor": ours / floor if floor and ours else None}


CASES: dict[str, Callable[[Config, Pool, Callable[[str], None]], dict[str, Any]]] = {
    "ingest": case_ingest, "remote": case_remote, "rag": case_rag, "scaling": case_scaling,
    "determinism": case_determinism, "agents": case_agents, "chain": case_chain,
    "lc-embed": case_lc_embed, "agent_memory": case_agent_memory,
    "checkpoint": case_checkpoint, "graphs": case_graphs,
}
