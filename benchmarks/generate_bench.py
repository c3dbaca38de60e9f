"""Questions/s answering over real HTTP: sequential client calls vs aaflow's batched Generate, one run.

    python benchmarks/generate_bench.py [--quick] [--rounds 1] [--out benchmarks/results/generate.json]

Both sides send the same prompts (question + top-k passages retrieved once from a pydoc corpus
index, retrieval not timed) with the same max_tokens to the same server on 127.0.0.1:
- sequential: `openai.OpenAI().chat.completions.create` in a loop, one request at a time
  (what a plain script does);
- aaflow: the Generate operator's openai backend (AsyncBatcher, max_in_flight requests), whose
  concurrent requests the server batches.
Two servers: EchoChat with a hosted-endpoint-like latency (orchestration only), and the local
SmolLM2-135M (`aaflow serve-llm`'s app, greedy, batched decoding). Answers of the two sides
are compared for equality. Rounds alternate sides; every round is reported.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import openai  # noqa: E402
import pyarrow as pa  # noqa: E402

from aaflow_core.models.llm import shared_llm  # noqa: E402
from aaflow_core.operators.generate import GenerateOperator  # noqa: E402
from aaflow_core.pipelines import IngestConfig, ingest, query  # noqa: E402
from aaflow_core.pipelines.ask import questions_batch  # noqa: E402
from aaflow_core.pipelines.corpus import write_stdlib_corpus  # noqa: E402
from aaflow_core.plan import package_versions  # noqa: E402
from aaflow_core.serve import STATS, EchoChat, ServerThread, create_app  # noqa: E402
from aaflow_core.serve.local_llm import local_llm_app  # noqa: E402

TOPICS = ("argparse", "json", "re", "collections", "pathlib", "shlex", "fnmatch", "itertools")
ASKS = ("What does {} do?", "How do I use {} in a script?", "Give an example of {}.", "What are the main functions of {}?")


def make_questions(n: int) -> list[str]:
    return [ASKS[(i // len(TOPICS)) % len(ASKS)].format(TOPICS[i % len(TOPICS)]) + f" (#{i})" for i in range(n)]


def sequential(base_url: str, op: GenerateOperator, batch: pa.RecordBatch, max_tokens: int) -> list[str]:
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
    out = []
    for convo in op.conversations(batch):
        res = client.chat.completions.create(model="aaflow", messages=[{"role": r, "content": c} for r, c in convo],
                                             max_tokens=max_tokens, temperature=0)
        out.append((res.choices[0].message.content or "").strip())
    client.close()
    return out


def compare(name: str, app: Any, batch: pa.RecordBatch, max_tokens: int, in_flight: int, rounds: int) -> dict[str, Any]:
    n = batch.num_rows
    result: dict[str, Any] = {"server": name, "questions": n, "max_tokens": max_tokens, "max_in_flight": in_flight,
                              "rounds": []}
    with ServerThread(app) as server:
        op = GenerateOperator(backend="openai", base_url=server.base_url, max_new_tokens=max_tokens, max_in_flight=in_flight)
        op.open()
        try:
            for r in range(rounds):
                timings = {}
                for side in (("sequential", "aaflow") if r % 2 == 0 else ("aaflow", "sequential")):
                    t0 = time.perf_counter()
                    if side == "sequential":
                        seq = sequential(server.base_url, op, batch, max_tokens)
                    else:
                        ours = op.process(batch).column("answer").to_pylist()
                    timings[side] = time.perf_counter() - t0
                row = {f"{s}_s": round(t, 3) for s, t in timings.items()}
                row.update({f"{s}_qps": round(n / t, 3) for s, t in timings.items()})
                row["speedup"] = round(timings["sequential"] / timings["aaflow"], 2)
                row["answers_equal"] = seq == ours
                result["rounds"].append(row)
                print(f"{name}: {row}", flush=True)
        finally:
            op.close()
        result["server_max_in_flight"] = app[STATS].max_in_flight
    result["example"] = {"question": batch.column("question")[0].as_py(), "answer": ours[0]}
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few questions, short answers")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the local model")
    ap.add_argument("--out", default="benchmarks/results/generate.json")
    args = ap.parse_args(argv)
    n_echo, n_local, tokens = (32, 8, 16) if args.quick else (128, 16, 32)
    with tempfile.TemporaryDirectory() as tmp:
        write_stdlib_corpus(Path(tmp) / "corpus", size_bytes=300_000)
        ingest(IngestConfig(paths=(str(Path(tmp) / "corpus"),), index_dir=str(Path(tmp) / "index"), progress=False))
        questions = make_questions(max(n_echo, n_local))
        hits = query(Path(tmp) / "index", questions, k=3)
    batch = questions_batch(questions, hits, 400)
    t0 = time.perf_counter()
    llm = shared_llm(None, args.threads)
    load_s = time.perf_counter() - t0
    echo_app = create_app(chat=EchoChat(tokens_per_s=200), latency_s=0.05)
    results = [
        compare("echo (50 ms + 200 tok/s)", echo_app, batch.slice(0, n_echo), 64, 16, args.rounds),
        compare("local SmolLM2-135M (serve-llm app)", local_llm_app(llm, embeddings=False), batch.slice(0, n_local),
                tokens, 8, args.rounds),
    ]
    report = {"benchmark": "generate", "quick": args.quick, "model_load_s": round(load_s, 2), "threads": args.threads,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
              "versions": package_versions(), "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
