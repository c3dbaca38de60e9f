"""Markdown tables for the generated section of docs/benchmarks.md (one function per case)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.figures import fmt, phase_medians


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(fmt(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    return "\n".join([_row(header), "|" + "---|" * len(header), *(_row(r) for r in rows)])


def _spread(s: dict[str, Any]) -> str:
    return f"{fmt(s['min'])}–{fmt(s['max'])}" if s else "failed"


def _phases(side: dict[str, Any]) -> str:
    ph = phase_medians(side)
    return ", ".join(f"{k} {fmt(v)}" for k, v in sorted(ph.items(), key=lambda kv: -kv[1]) if v >= 0.0005)


def ingest_table(case: dict[str, Any]) -> str:
    rows = []
    for name, side in case["sides"].items():
        ok = [r for r in side["runs"] if "wall_s" in r]
        err = next((r["error"].strip().splitlines()[-1] for r in side["runs"] if "error" in r), "")
        rows.append([name, side["wall_s"].get("median"), _spread(side["wall_s"]), len(ok),
                     ok[0].get("rows") if ok else None, _phases(side) + (f" ERROR: {err[:120]}" if err else "")])
    agree = [f"- {pair}: same chunk texts: {a['same_texts']}, max abs vector diff: {fmt(a['max_abs_vector_diff'])}"
             for pair, a in case.get("agreement", {}).items()]
    c = case["corpus"]
    return "\n".join([f"Corpus: {c['files']} files, {c['bytes'] / 2**20:.2f} MiB ({c['source']}).", "",
                      _table(["side", "median s", "min–max s", "runs", "rows", "median busy s per phase"], rows),
                      "", "Outputs compared (first run of each side):", *agree])


def rag_table(sub: dict[str, Any]) -> str:
    rows = [[n, s["wall_s"].get("median"), _spread(s["wall_s"]), sub["questions_per_s"][n], sub["latency_p50_s"][n],
             sub["latency_p95_s"][n], sub["cpu_s"][n]] for n, s in sub["sides"].items()]
    srv = {k: v for k, v in sub["server"].items() if k != "stats"}
    return "\n".join([f"{sub['questions']} questions; server: {srv}; identical answers on every side and run: "
                      f"{sub['identical_answers']}.", "",
                      _table(["side", "median s", "min–max s", "questions/s", "p50 s (as completed)", "p95 s (as completed)", "client CPU s (batch)"], rows)])


def scaling_table(case: dict[str, Any]) -> str:
    if "skipped" in case:
        return f"Skipped: {case['skipped']}"
    rows = [[n, p["threads_per_rank"], p["wall_s"].get("median"), _spread(p["wall_s"]), p["pipeline_s"].get("median"),
             p.get("speedup_wall_s"), p.get("speedup_pipeline_s"), len(p["output_sha256"])]
            for n, p in case["per_ranks"].items()]
    return "\n".join([f"{case['cores']} cores; corpus {case['corpus']['bytes'] / 2**20:.2f} MiB.", "",
                      _table(["ranks", "threads/rank", "wall median s", "wall min–max", "pipeline median s",
                              "speedup (wall)", "speedup (pipeline)", "distinct output hashes over repeats"], rows)])


def determinism_table(case: dict[str, Any]) -> str:
    rows = []
    for name, side in case["sides"].items():
        if "error" in side:
            rows.append([name, "-", "-", "-", side["error"].strip().splitlines()[-1][:150]])
            continue
        for cname, c in (side.get("configs") or {name: side}).items():
            label = cname if cname == name else f"{name}: {cname}"
            rows.append([label, c["runs"], c["distinct_output_hashes"], c["distinct_content_hashes"],
                         ", ".join(v["variant"] for v in c["variants"][-2:])])
    why = [f"- {name}: {side.get('why', '')}" for name, side in case["sides"].items() if side.get("why")]
    same = case["sides"].get("llamaindex", {}).get("same_content_as_stock_id_func")
    extra = [f"- llamaindex, same texts+vectors as stock with id_func: {same}"] if same else []
    return "\n".join([_table(["side / configuration", "runs", "distinct output hashes (ids+texts+vectors)",
                              "distinct content hashes (texts+vectors)", "last variants"], rows), "", *why, *extra])


def section(report: dict[str, Any], results: Path, images: list[tuple[str, str]],
            speedups: list[tuple[str, str, float]]) -> str:
    m, cfg, cases = report["machine"], report["config"], report["cases"]
    out = ["## Side-by-side suite (stock LangChain / LlamaIndex vs aaflow)", "",
           "```", "python -m benchmarks run [--quick] [--suite ingest,remote,rag,scaling,determinism]   # or: make bench",
           "python -m benchmarks render [RESULTS_JSON]", "```", "",
           "Sides run in one worker process per framework (LangChain, LlamaIndex, aaflow native), started once "
           "for the whole suite; each side loads and warms what it needs before the clock starts; runs "
           "alternate between sides (A B C, C B A, ...); medians with min–max over every repetition; every run is in "
           f"the JSON (`{Path(results).name}`).", "",
           f"Machine: {m['cpu']}, {m['cpus']} CPUs (affinity {m.get('affinity')}), Python {m['python']}, "
           f"load average at start {', '.join(f'{x:.1f}' for x in m['load_avg'])}; {m['time']}. "
           f"Mode: {'quick' if cfg['quick'] else 'full'}, {cfg['repeats']} repetition(s). "
           f"Environment for every worker: {report['env']}.", "",
           "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", "",
           "Wall time per case (s): " + ", ".join(f"{k} {fmt(v)}" for k, v in report["case_wall_s"].items())
           + (f"; whole suite {fmt(report['suite_wall_s'])} s." if "suite_wall_s" in report else "."), ""]
    if "ingest" in cases:
        out += ["### 1. RAG ingestion: load, chunk, embed, upsert (local all-MiniLM-L6-v2)", "",
                ingest_table(cases["ingest"]), ""]
    if "remote" in cases:
        r = cases["remote"]
        srv = r["server"]
        out += ["### 2. Embedding + upsert through an OpenAI-compatible endpoint on 127.0.0.1", "",
                f"Server: the bundled model behind `/v1/embeddings`, {srv['latency_s']} s added per request, at most "
                f"{srv['max_inputs']} inputs per request; it served {srv['stats']['requests']} requests "
                f"(max {srv['stats']['max_in_flight']} in flight).", "", ingest_table(r), ""]
    if "rag" in cases:
        out += ["### 3. Batch RAG question answering (retrieve, prompt, generate)", ""]
        for key, title in (("echo", "EchoChat endpoint (deterministic answers, fixed latency, tokens/s, concurrency limit)"),
                           ("local_llm", "the real local model (`aaflow serve-llm` application)")):
            sub = cases["rag"].get(key, {})
            out += [f"#### {title}", "", rag_table(sub) if "sides" in sub else f"Skipped: {sub.get('skipped')}", ""]
    if "scaling" in cases:
        out += ["### 4. Scaling: native ingest over MPI ranks", "", scaling_table(cases["scaling"]), ""]
    if "determinism" in cases:
        d = cases["determinism"]
        out += ["### 5. Determinism: same workflow, several runs, perturbed thread timing", "",
                f"{d['runs_per_variant']} plain runs per configuration plus one with a CPU-hog thread (aaflow "
                f"native also on the serial backend); corpus {d['corpus']['bytes'] / 2**20:.3f} MiB.", "",
                determinism_table(d), ""]
    out += [f"![{title}](img/{name})\n" for title, name in images]
    return "\n".join(out)
