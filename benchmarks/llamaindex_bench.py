"""Stock `IngestionPipeline` vs `AAFlowIngestionPipeline` on a real corpus, side by side in one run.

    python benchmarks/llamaindex_bench.py [--quick] [--out benchmarks/results/llamaindex.json]

Local part: SentenceSplitter (defaults) + HuggingFaceEmbedding (the bundled all-MiniLM-L6-v2)
+ FaissVectorStore, cache on (stock defaults): stock `run`, stock `run(num_workers=2)` (its
spawn process pool), aaflow `run`. Remote part: the same corpus through an OpenAI-compatible
embeddings server on 127.0.0.1 with a fixed per-request latency: stock `run`/`arun` vs aaflow
`run`/`arun`. Every configuration runs in its own child process (fresh interpreter, model
loaded and warmed before the clock starts), so peak RSS is per configuration; the children
run one after another, alternating stock and aaflow, and each is repeated `--repeats` times.

`ingest_side` is the suite's side for the same measurements (`python -m benchmarks`), with a
deterministic `id_func` and stock's per-node hashes for the determinism case.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ("stock_run", "stock_run_workers2", "aaflow_run")
REMOTE = ("stock_run", "stock_arun", "aaflow_run", "aaflow_arun")


def env() -> dict[str, str]:
    import llama_index.core

    out = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    out["TIKTOKEN_CACHE_DIR"] = str(Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache")
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return out


def documents(corpus: Path) -> list[Any]:
    from llama_index.core import Document

    return [Document(text=p.read_text(), doc_id=p.stem, metadata={"file_name": p.name})
            for p in sorted(corpus.glob("*.txt"))]


def stable_id(i: int, doc: Any) -> str:
    """A deterministic node id (a module-level function, so `num_workers` pools can pickle it)."""
    return hashlib.sha256(f"{doc.id_}:{i}".encode()).hexdigest()[:32]


@functools.cache
def local_embedding() -> Any:
    """The bundled all-MiniLM-L6-v2 as HuggingFaceEmbedding, loaded once per process (every side shares it)."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from aaflow_core.models.embedding import bundled_model_path

    return HuggingFaceEmbedding(model_name=str(bundled_model_path()))


def steps(kind: str, base_url: str | None, id_func: bool = False) -> list[Any]:
    """The user's transformations: a splitter and an embedding model (local, or the remote endpoint)."""
    from llama_index.core.node_parser import SentenceSplitter

    ids = {"id_func": stable_id} if id_func else {}
    if kind == "local":
        return [SentenceSplitter(**ids), local_embedding()]
    from llama_index.embeddings.openai import OpenAIEmbedding

    return [SentenceSplitter(chunk_size=256, chunk_overlap=20, **ids),
            OpenAIEmbedding(api_base=base_url, api_key="sk-local", embed_batch_size=10)]


def pipeline(kind: str, config: str, base_url: str | None, transformations: list[Any] | None = None) -> Any:
    """The pipeline a user would write; only the class differs between stock and aaflow."""
    import faiss
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.vector_stores.faiss import FaissVectorStore

    from aaflow_adapters.llamaindex import AAFlowIngestionPipeline

    cls = AAFlowIngestionPipeline if config.startswith("aaflow") else IngestionPipeline
    return cls(transformations=transformations or steps(kind, base_url),
               vector_store=FaissVectorStore(faiss_index=faiss.IndexFlatL2(384)))


@functools.cache
def embed_clock() -> "EmbedClock":
    """This process's one clock (handlers on LlamaIndex's global dispatcher are never removed)."""
    return EmbedClock()


class EmbedClock:
    """Seconds during which at least one embedding call was in progress (LlamaIndex's own events)."""

    def __init__(self) -> None:
        from llama_index.core.instrumentation import get_dispatcher
        from llama_index.core.instrumentation.event_handlers import BaseEventHandler
        from llama_index.core.instrumentation.events.embedding import EmbeddingEndEvent, EmbeddingStartEvent

        clock = self
        self.seconds, self._open, self._since = 0.0, 0, 0.0

        class Handler(BaseEventHandler):
            def handle(self, event: Any, **kwargs: Any) -> None:
                now = time.perf_counter()
                if isinstance(event, EmbeddingStartEvent):
                    if clock._open == 0:
                        clock._since = now
                    clock._open += 1
                elif isinstance(event, EmbeddingEndEvent):
                    clock._open -= 1
                    if clock._open == 0:
                        clock.seconds += now - clock._since

        get_dispatcher().add_event_handler(Handler())


def digest(nodes: list[Any]) -> dict[str, Any]:
    """Hashes of the run's output: with node ids (what a store keeps) and of the contents only."""
    import numpy as np

    vectors = np.asarray([n.embedding for n in nodes], dtype=np.float32)
    texts, full = hashlib.sha256(), hashlib.sha256()
    for n in nodes:
        texts.update(n.get_content().encode() + b"\0")
        full.update(n.node_id.encode() + b"\0" + n.get_content().encode() + b"\0")
    full.update(vectors.tobytes())
    return {"texts_sha256": texts.hexdigest(), "output_sha256": full.hexdigest(),
            "content_sha256": hashlib.sha256(texts.digest() + vectors.tobytes()).hexdigest(), "vectors": vectors}


def stage_phases(busy: dict[str, float]) -> dict[str, float]:
    """aaflow's per-stage busy seconds grouped as the suite's phases (stage names carry the component)."""
    out = {"chunk": 0.0, "embed": 0.0, "other": 0.0}
    for name, seconds in busy.items():
        key = "embed" if "Embedding" in name else "chunk" if ("Splitter" in name or "Parser" in name) else "other"
        out[key] += seconds
    return out


def ingest_side(corpus: str, config: str, kind: str = "local", base_url: str | None = None,
                id_func: bool = False, keep_vectors: bool = True) -> Callable[[], dict[str, Any]]:
    """Suite side: one `config` (see LOCAL/REMOTE), a fresh pipeline (and cache) per run, model shared."""
    transformations = steps(kind, base_url, id_func)
    warm(pipeline(kind, config, base_url, transformations))
    clock = embed_clock()
    first = [keep_vectors]

    def run() -> dict[str, Any]:
        t0 = time.perf_counter()
        docs = documents(Path(corpus))
        t_load = time.perf_counter() - t0
        # OpenAIEmbedding keeps its AsyncOpenAI client, bound to the event loop of the first
        # `asyncio.run`; a remote run gets fresh steps (no model to load) so every run has its own.
        fresh = transformations if kind == "local" else steps(kind, base_url, id_func)
        pipe = pipeline(kind, config, base_url, fresh)
        clock.seconds = 0.0
        t1 = time.perf_counter()
        nodes = run_config(pipe, config, docs)
        wall = time.perf_counter() - t0
        stats = getattr(pipe, "last_run", None)
        if stats is not None:
            phases = {"load": t_load, **stage_phases(stats.stage_busy_s), "upsert": stats.vector_store_s}
        else:
            rest = time.perf_counter() - t1 - clock.seconds
            phases = {"load": t_load, "embed": clock.seconds, "split+upsert+other": rest}
        out = {"wall_s": wall, "phases_s": phases, "overlapped": stats is not None, "rows": len(nodes),
               **digest(nodes)}
        if not first[0]:
            del out["vectors"]
        first[0] = False
        return out

    return run


def run_config(pipe: Any, config: str, docs: list[Any]) -> list[Any]:
    """Run `pipe` the way `config` names it: `...arun` (async), `...workers2`, or plain `run`."""
    import asyncio

    if config.endswith("arun"):
        return asyncio.run(pipe.arun(documents=docs))
    return pipe.run(documents=docs, num_workers=2 if config.endswith("workers2") else None)


def warm(pipe: Any) -> None:
    """Load tokenizer data and run the model once, outside the timed region."""
    from llama_index.core import Document

    pipe.transformations[0]([Document(text="warm up. " * 50)])
    pipe.transformations[-1].get_text_embedding_batch(["warm up"] * 4)


def child(kind: str, config: str, corpus: Path, base_url: str | None) -> dict[str, Any]:
    """One measured configuration (runs in a fresh process)."""
    import numpy as np

    docs = documents(corpus)
    pipe = pipeline(kind, config, base_url)
    warm(pipe)
    t0 = time.perf_counter()
    nodes = run_config(pipe, config, docs)
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"wall_s": wall, "nodes": len(nodes), "vectors": int(pipe.vector_store.client.ntotal),
                           "embedding_checksum": float(np.asarray([n.embedding for n in nodes]).sum())}
    stats = getattr(pipe, "last_run", None)
    if stats is not None:
        out["phases_s"] = {"prepare": stats.prepare_s, "transform": stats.transform_s,
                           "vector_store": stats.vector_store_s, "docstore": stats.docstore_s}
        out["stage_busy_s"] = stats.stage_busy_s
        out["faiss_add_calls"] = stats.vector_write.calls
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["peak_rss_children_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return out


def measure(kind: str, config: str, corpus: Path, base_url: str | None, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, config, str(corpus), base_url or "-"]
    try:
        proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1][:300]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[-1]["error"], "runs": runs}
    walls = [r["wall_s"] for r in ok]
    return {"wall_s_median": statistics.median(walls), "wall_s": walls, "runs": runs}


def side_by_side(kind: str, configs: tuple[str, ...], corpus: Path, repeats: int, base_url: str | None,
                 timeout: float) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    for _ in range(repeats):  # interleaved, so load from other processes hits every configuration alike
        for config in configs:
            runs[config].append(measure(kind, config, corpus, base_url, timeout))
            print(f"{kind:6} {config:20} {runs[config][-1].get('wall_s', runs[config][-1].get('error'))}", flush=True)
    return {c: summarise(r) for c, r in runs.items()}


def speedups(results: dict[str, Any], baselines: tuple[str, ...], ours: str) -> dict[str, float]:
    mine = results[ours].get("wall_s_median")
    return {f"{ours}_vs_{b}": results[b]["wall_s_median"] / mine
            for b in baselines if mine and "wall_s_median" in results[b]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "llamaindex.json"))
    ap.add_argument("--quick", action="store_true", help="small corpus, one repeat")
    ap.add_argument("--size-mb", type=float, default=None, help="corpus size (default 1.0, quick 0.15)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--latency", type=float, default=0.2, help="remote endpoint seconds per request")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per configuration before giving up")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, config, corpus, url = args.child
        print(json.dumps(child(kind, config, Path(corpus), None if url == "-" else url)))
        return
    os.environ.update(env())
    from aaflow_core.pipelines.corpus import write_stdlib_corpus
    from aaflow_core.serve import STATS, ModelEmbeddings, ServerThread, create_app

    size_mb = args.size_mb or (0.15 if args.quick else 1.0)
    repeats = args.repeats or (1 if args.quick else 2)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        files = write_stdlib_corpus(corpus, int(size_mb * 2**20))
        corpus_info = {"files": len(files), "bytes": sum(f.stat().st_size for f in files), "source": "stdlib pydoc"}
        local = side_by_side("local", LOCAL, corpus, repeats, None, args.timeout)
        app = create_app(embeddings=ModelEmbeddings(threads=2), latency_s=args.latency)
        with ServerThread(app) as server:
            remote = side_by_side("remote", REMOTE, corpus, repeats, server.base_url, args.timeout)
            requests = app[STATS].requests
    report = {
        "corpus": corpus_info,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {"repeats": repeats, "latency_s": args.latency, "remote_requests_total": requests},
        "local": local, "remote": remote,
        "speedups": {**speedups(local, ("stock_run", "stock_run_workers2"), "aaflow_run"),
                     **{f"remote_{k}": v for k, v in speedups(remote, ("stock_run", "stock_arun"), "aaflow_run").items()},
                     **{f"remote_{k}": v for k, v in speedups(remote, ("stock_arun",), "aaflow_arun").items()}},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report["speedups"], indent=2))


if __name__ == "__main__":
    main()
