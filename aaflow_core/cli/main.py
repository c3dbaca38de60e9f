"""Entry point: builds the parser from the subcommand modules and maps errors to exit codes.

Exit codes: 0 success, 1 failure (nothing usable, refused index directory, runtime error),
2 usage error, 3 success with some inputs skipped (listed on stderr and in the manifest).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from aaflow_core.errors import AAFlowError

COMMANDS = ("corpus", "ingest", "query", "ask", "serve-llm")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SKIPPED = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aaflow", description="Arrow-native RAG ingestion and retrieval.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"aaflow_core.cli.{name.replace('-', '_')}").register(sub)
    return parser


def int_at_least(low: int) -> Callable[[str], int]:
    """argparse type: an integer >= `low`, with a message naming the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} must be >= {low}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


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
