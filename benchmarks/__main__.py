"""`python -m benchmarks run|render`: the suite's single entry point."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, machine, prepare_env

RESULTS = ROOT / "benchmarks" / "results"


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from benchmarks.harness import Pool
    from benchmarks.suite import CASES, Config

    names = args.suite.split(",") if args.suite else list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    cfg = Config.preset(args.quick, repeats=args.repeats, ingest_mb=args.corpus_mb, questions=args.questions,
                        local_llm=args.local_llm, chain_questions=args.chain_questions,
                        chain_questions_large=None if args.chain_questions is None else 0)
    env = prepare_env()
    out = args.out or RESULTS / ("suite-quick.json" if args.quick else "suite.json")
    report: dict[str, Any] = {"machine": machine(), "env": env, "config": asdict(cfg), "cases": {}, "case_wall_s": {}}
    if out.exists() and args.suite:  # a partial run updates the cases it ran
        old = json.loads(out.read_text())
        report["cases"], report["case_wall_s"] = old.get("cases", {}), old.get("case_wall_s", {})
    t_all = time.perf_counter()
    with Pool(timeout_s=cfg.timeout_s) as pool:  # one worker per framework, kept for every case
        for name in names:
            print(f"== {name}", flush=True)
            t0 = time.perf_counter()
            report["cases"][name] = CASES[name](cfg, pool, lambda line: print(line, flush=True))
            report["case_wall_s"][name] = time.perf_counter() - t0
            print(f"== {name}: {report['case_wall_s'][name]:.1f} s", flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=1, default=str))
    report["suite_wall_s"] = time.perf_counter() - t_all
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {out} ({report['suite_wall_s']:.1f} s)")
    if not args.no_render:
        from benchmarks.render import render

        render(out, ROOT / "docs")
    return 0


def render_cmd(args: argparse.Namespace) -> int:
    from benchmarks.render import render

    render(args.results or RESULTS / "suite.json", ROOT / "docs")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description="stock vs aaflow, side by side")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the suite (or some cases), write JSON, render PNG + docs/benchmarks.md")
    r.add_argument("--suite", help="comma-separated cases: ingest,remote,rag,scaling,determinism,agents,chain,lc-embed,"
                                   "agent_memory,checkpoint,graphs (default: all)")
    r.add_argument("--quick", action="store_true", help="tiny corpora, one repetition, no local LLM (a smoke run: ~1.5 min on 2 cores)")
    r.add_argument("--repeats", type=int, default=None)
    r.add_argument("--corpus-mb", type=float, default=None, help="case 1 and 4 corpus size")
    r.add_argument("--questions", type=int, default=None, help="case 3 questions (EchoChat endpoint)")
    r.add_argument("--chain-questions", type=int, default=None,
                   help="case 'chain' once, at N questions with stock defaults among the sides (default: 200 "
                        "with them, then 1000 without; stock defaults take ~N x 0.3 s / 6 threads)")
    r.add_argument("--local-llm", action=argparse.BooleanOptionalAction, default=None,
                   help="case 3 also with the real SmolLM2 behind the endpoint (default: on, off with --quick)")
    r.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/suite[-quick].json)")
    r.add_argument("--no-render", action="store_true")
    r.set_defaults(handler=run)
    d = sub.add_parser("render", help="PNG plots + docs/benchmarks.md from a results JSON")
    d.add_argument("results", nargs="?", type=Path)
    d.set_defaults(handler=render_cmd)
    args = ap.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
