"""What every subcommand shares: exit codes and argparse value parsers (main and the subcommands import it).

Exit codes: 0 success, 1 failure (nothing usable, refused index directory, runtime error),
2 usage error, 3 success with some inputs skipped (listed on stderr and in the manifest).
"""
from __future__ import annotations

import argparse
from collections.abc import Callable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SKIPPED = 0, 1, 2, 3


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


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value
