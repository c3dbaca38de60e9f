"""Entry point: builds the parser from the subcommand modules and maps errors to exit codes (`cli/common.py`).

Subcommands import `cli.common`, never this module, so imports point one way: main -> subcommands -> common.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from aaflow_core.cli.common import EXIT_FAILED, EXIT_OK, EXIT_SKIPPED, EXIT_USAGE
from aaflow_core.errors import AAFlowError

COMMANDS = ("corpus", "ingest", "query", "ask", "serve-llm")
__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_SKIPPED", "EXIT_USAGE", "build_parser", "main"]  # exit codes: for callers of main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aaflow", description="Arrow-native RAG ingestion and retrieval.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"aaflow_core.cli.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except AAFlowError as exc:
        print(f"aaflow: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("aaflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
