"""The cost of checkpointing: the same batch with and without `checkpoint=`, side by side in one run.

LangChain: `AAFlowRunnable(prompt | ChatOpenAI | parser)` over N questions against EchoChat on
loopback, without a checkpoint, with a fresh one (every output committed), and resumed from a
complete one (nothing sent: the price of reading the checkpoint back). LlamaIndex: the remote
embedding ingest of case 2 without and with a fresh checkpoint (every micro-batch committed).
"""
from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def chat_chain(base_url: str) -> Any:
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(base_url=base_url, api_key="not-needed", model="echo", max_retries=0, temperature=0,
                       timeout=600)
    return ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")]) | model | StrOutputParser()


def langchain_side(base_url: str, n: int, in_flight: int, mode: str) -> Callable[[], dict[str, Any]]:
    """Suite side: `mode` is off | fresh | resumed (the checkpoint filled once, untimed, in setup)."""
    from aaflow_adapters.langchain import AAFlowRunnable

    chain = chat_chain(base_url)
    inputs = [{"q": f"question {i} about checkpoint cost, words to echo back"} for i in range(n)]
    tmp = Path(tempfile.mkdtemp(prefix="aaflow-ckbench-"))
    AAFlowRunnable(chain, max_concurrency=in_flight).batch(inputs[:4])  # warm the client and code paths
    if mode == "resumed":
        AAFlowRunnable(chain, max_concurrency=in_flight, checkpoint=tmp / "full").batch(inputs)
    runs = [0]

    def run() -> dict[str, Any]:
        runs[0] += 1
        where = {"off": None, "fresh": tmp / f"run-{runs[0]}", "resumed": tmp / "full"}[mode]
        runner = AAFlowRunnable(chain, max_concurrency=in_flight, checkpoint=where)
        t0, c0 = time.perf_counter(), time.process_time()
        answers = runner.batch(inputs)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        parts = len(list(where.glob("part-*.parquet"))) if where is not None else 0
        return {"wall_s": wall, "cpu_s": cpu, "inputs": n, "parts": parts,
                "answers_sha256": hashlib.sha256("\0".join(answers).encode()).hexdigest()}

    return run


def llamaindex_side(corpus: str, base_url: str, checkpoint: bool) -> Callable[[], dict[str, Any]]:
    """Suite side: case 2's aaflow `run` through the remote endpoint, with or without a fresh checkpoint."""
    from benchmarks.llamaindex_bench import digest, documents, pipeline, steps

    tmp = Path(tempfile.mkdtemp(prefix="aaflow-ckbench-li-"))
    runs = [0]

    def run() -> dict[str, Any]:
        runs[0] += 1
        pipe = pipeline("remote", "aaflow_run", base_url, steps("remote", base_url, id_func=True))
        if checkpoint:
            pipe.checkpoint = str(tmp / f"run-{runs[0]}")
        docs = documents(Path(corpus))
        t0, c0 = time.perf_counter(), time.process_time()
        nodes = pipe.run(documents=docs)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        out = digest(nodes)
        out.pop("vectors")
        return {"wall_s": wall, "cpu_s": cpu, "rows": len(nodes), **out}

    return run


def case_checkpoint(cfg: Any, pool: Any, log: Callable[[str], None]) -> dict[str, Any]:
    """6. Checkpointing's cost: the same LangChain batch and LlamaIndex remote ingest with and without it."""
    from dataclasses import asdict

    from aaflow_core.serve import STATS, EchoChat, ModelEmbeddings, ServerThread, create_app
    from benchmarks.harness import median, side_by_side
    from benchmarks.suite import corpus

    n = 200 if cfg.quick else 1000
    side = "benchmarks.checkpoint_bench:langchain_side"
    app = create_app(chat=EchoChat(), latency_s=0.05, max_concurrency=cfg.chat_max_concurrency)
    with ServerThread(app) as server:
        common = {"base_url": server.base_url, "n": n, "in_flight": cfg.chat_max_concurrency}
        lc = side_by_side({f"langchain checkpoint={m}": (side, {**common, "mode": m})
                           for m in ("off", "fresh", "resumed")}, cfg.repeats, pool, log=log)
        chat_stats = asdict(app[STATS])
    with tempfile.TemporaryDirectory() as tmp:
        info = corpus(Path(tmp) / "corpus", cfg.remote_mb)
        app = create_app(embeddings=ModelEmbeddings(threads=cfg.threads), latency_s=cfg.embed_latency_s,
                         max_inputs=cfg.embed_max_inputs)
        with ServerThread(app) as server:
            li_side = "benchmarks.checkpoint_bench:llamaindex_side"
            li = side_by_side({f"llamaindex checkpoint={c}": (li_side, {"corpus": info["path"],
                                                                         "base_url": server.base_url,
                                                                         "checkpoint": c == "on"})
                               for c in ("off", "on")}, cfg.repeats, pool, log=log)
    sides = {**lc, **li}
    overhead = {f"{ours} / {base} (wall)": _ratio(median(sides, ours), median(sides, base))
                for base, ours in (("langchain checkpoint=off", "langchain checkpoint=fresh"),
                                   ("langchain checkpoint=off", "langchain checkpoint=resumed"),
                                   ("llamaindex checkpoint=off", "llamaindex checkpoint=on"))}
    same = {k: len({r.get(k) for s in sides.values() for r in s["runs"] if r.get(k)}) == 1
            for k in ("answers_sha256", "output_sha256")}
    return {"inputs": n, "corpus": info, "chat_server": {"latency_s": 0.05, "stats": chat_stats}, "sides": sides,
            "overhead": overhead, "identical_outputs": same}


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not b else a / b
