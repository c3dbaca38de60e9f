"""Remote model calls: LlamaIndex embeddings over HTTP, and a rate-limited chat endpoint, side by side.

    python -m benchmarks.remote_bench [--repeats 3] [--pages 60] [--out benchmarks/results/remote.json]

1. LlamaIndex: `pages` pydoc pages (4 KB each), SentenceSplitter(256/20) +
   `OpenAIEmbedding(embed_batch_size=16)` against a loopback server answering each request in
   80 ms + 0.2 ms per input: stock `run`, stock `arun`, aaflow `run`/`arun`, and the floor
   (the same requests, all in flight from plain aiohttp, no splitting).
2. Rate limit: a loopback chat endpoint admitting 40 requests per rolling second (429 with
   `retry-after-ms`, `retry-after`, `x-ratelimit-*`), 400 requests: the core client reading
   only the headers, the core client told `rpm=2400`, and stock `ChatOpenAI.batch`
   (max_concurrency=64). The limit's minimum is N / rate = 10 s.
Every side runs in a worker process (benchmarks/harness.py), runs alternate, outputs are compared.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, Pool, machine, prepare_env, side_by_side, speedup

SIDES = "benchmarks.remote_sides"


def write_pages(folder: Path, count: int, chars: int = 4000) -> dict[str, Any]:
    from aaflow_core.pipelines.corpus import write_stdlib_corpus

    files = write_stdlib_corpus(folder, 2**30)  # stops at the module list's end; pages cut from the start
    kept = files[:count]
    for f in kept:
        f.write_text(f.read_text(encoding="utf-8")[:chars], encoding="utf-8")
    for f in files[count:]:
        f.unlink()
    return {"pages": len(kept), "bytes": sum(f.stat().st_size for f in kept)}


def llamaindex_case(pool: Pool, repeats: int, pages: int) -> dict[str, Any]:
    from aaflow_core.serve import STATS, HashEmbeddings, ServerThread, create_app

    with tempfile.TemporaryDirectory() as tmp:
        info = write_pages(Path(tmp) / "pages", pages)
        app = create_app(embeddings=HashEmbeddings(dim=64, item_s=0.0002), latency_s=0.08)
        with ServerThread(app) as server:
            c, url = str(Path(tmp) / "pages"), server.base_url
            sides = {f"llamaindex {cfg.replace('_', ' ')}": (f"{SIDES}:llamaindex_side",
                                                             {"corpus": c, "base_url": url, "config": cfg})
                     for cfg in ("stock_run", "stock_arun", "aaflow_run", "aaflow_arun", "aaflow_run_one_process")}
            sides["floor (plain aiohttp, requests only)"] = (f"{SIDES}:floor_side", {"corpus": c, "base_url": url})
            result = side_by_side(sides, repeats, pool)
            served = app[STATS].requests
    digests = {name: {r.get("output_sha256") for r in side["runs"]} for name, side in result.items()}
    pairs = [("llamaindex stock run", "llamaindex aaflow run"), ("llamaindex stock arun", "llamaindex aaflow run"),
             ("llamaindex stock arun", "llamaindex aaflow arun"),
             ("llamaindex stock arun", "llamaindex aaflow run one process"),
             ("floor (plain aiohttp, requests only)", "llamaindex aaflow run")]
    return {"corpus": info, "server": {"latency_s": 0.08, "item_s": 0.0002, "requests_served": served},
            "sides": result, "same_output": len(set().union(*digests.values())) == 1,
            "speedups": {f"{a} / {b}": speedup(result, a, b) for a, b in pairs}}


def ratelimit_case(pool: Pool, repeats: int, n: int = 400, rate: int = 40) -> dict[str, Any]:
    from aaflow_core.serve import EchoChat, ServerThread, create_app
    from aaflow_core.serve.ratelimit import rate_limit

    app = create_app(chat=EchoChat(), latency_s=0.1)
    gate = rate_limit(app, limit=rate, window_s=1.0)
    sides = {"aaflow core client (headers only)": (f"{SIDES}:core_limits_side", {"n": n}),
             "aaflow core client (rpm=2400)": (f"{SIDES}:core_limits_side", {"n": n, "rpm": rate * 60.0}),
             "stock ChatOpenAI.batch(max_concurrency=64)": (f"{SIDES}:langchain_batch_side", {"n": n})}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    with ServerThread(app) as server:
        held = {name: pool.setup(target, {**params, "base_url": server.base_url}) for name, (target, params) in sides.items()}
        names = list(sides)
        for rep in range(repeats):
            for name in names if rep % 2 == 0 else names[::-1]:
                w, key, error = held[name]
                time.sleep(1.1)  # the window empties between runs
                before = (gate.admitted, gate.rejected)
                r = {"error": error} if error else w.request("run", key)
                r["server_admitted"], r["server_rejected"] = gate.admitted - before[0], gate.rejected - before[1]
                total = r["server_admitted"] + r["server_rejected"]
                r["rejected_share"] = r["server_rejected"] / total if total else None
                runs[name].append(r)
                print(f"  {name:44} rep {rep}: " + (f"{r['wall_s']:.2f}s correct={r['correct']} lost={r['lost']} "
                                                    f"rejected={r['server_rejected']}" if "wall_s" in r else str(r)[-300:]))
        for w, key, _ in held.values():
            w.request("drop", key)
    minimum = n / rate
    return {"n": n, "rate_per_s": rate, "minimum_s": minimum, "server_latency_s": 0.1, "sides": {
        name: {"runs": rs, "median_wall_s": statistics.median(r["wall_s"] for r in rs if "wall_s" in r),
               "wall_over_minimum": statistics.median(r["wall_s"] for r in rs if "wall_s" in r) / minimum}
        for name, rs in runs.items() if any("wall_s" in r for r in rs)}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pages", type=int, default=60)
    ap.add_argument("--case", choices=("all", "llamaindex", "ratelimit"), default="all")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "remote.json")
    args = ap.parse_args()
    report: dict[str, Any] = {"machine": machine(), "env": prepare_env()}  # machine() records the load average
    with Pool() as pool:
        if args.case in ("all", "llamaindex"):
            report["llamaindex"] = llamaindex_case(pool, args.repeats, args.pages)
            print(json.dumps(report["llamaindex"]["speedups"], indent=1), "same output:", report["llamaindex"]["same_output"])
        if args.case in ("all", "ratelimit"):
            report["ratelimit"] = ratelimit_case(pool, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
