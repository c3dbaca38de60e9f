"""`aaflow ask "QUESTION" --index DIR` or `--questions FILE`: retrieve, then answer with a chat model."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from aaflow_core.cli.common import EXIT_OK, positive_int
from aaflow_core.errors import InputError, NoInputError
from aaflow_core.pipelines import Answer, AskConfig, ask


def register(sub: Any) -> None:
    p = sub.add_parser("ask", help="answer questions from an index with a chat model (local by default)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("question", nargs="?", metavar="QUESTION")
    what.add_argument("--questions", metavar="FILE", help="one question per line; answers as JSON lines, in order")
    p.add_argument("--index", required=True, metavar="DIR")
    p.add_argument("-k", type=positive_int, default=4, help="passages per question")
    p.add_argument("--llm", choices=("local", "openai"), default="local",
                   help="local: bundled SmolLM2-135M-Instruct; openai: an OpenAI-compatible endpoint")
    p.add_argument("--base-url", default=None, help="endpoint for --llm openai (key from OPENAI_API_KEY)")
    p.add_argument("--model", default=None, help="model name for --llm openai, or a .gguf path for --llm local")
    p.add_argument("--max-new-tokens", type=positive_int, default=64)
    p.add_argument("--max-in-flight", type=positive_int, default=8, help="concurrent requests for --llm openai")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="torch threads (decoding a 135M model is memory-bound; more threads help prompts only)")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    p.set_defaults(handler=run)


def read_questions(path: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read questions: {exc}") from None
    questions = [line.strip() for line in lines if line.strip()]
    if not questions:
        raise NoInputError(f"{path}: no questions (one per line expected)")
    return questions


def as_json(a: Answer) -> str:
    return json.dumps({"question": a.question, "answer": a.answer,
                       "sources": [{"rank": h.rank, "source": h.source, "chunk_id": h.chunk_id} for h in a.hits]})


def run(args: argparse.Namespace) -> int:
    questions = read_questions(args.questions) if args.questions else [args.question]
    config = AskConfig(k=args.k, llm=args.llm, model=args.model, base_url=args.base_url,
                       max_new_tokens=args.max_new_tokens, max_in_flight=args.max_in_flight, threads=args.threads)
    for a in ask(args.index, questions, config):
        if args.json or args.questions:
            print(as_json(a), flush=True)
            continue
        print(f"Q: {a.question}\nA: {a.answer}")
        print("   sources: " + ", ".join(sorted({h.source for h in a.hits})))
    return EXIT_OK
