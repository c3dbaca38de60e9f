"""`aaflow corpus DIR [--size-mb 1]`: write the demo corpus (Python's own documentation)."""
from __future__ import annotations

import argparse
from typing import Any

from aaflow_core.cli.common import EXIT_OK
from aaflow_core.pipelines.corpus import write_stdlib_corpus


def register(sub: Any) -> None:
    p = sub.add_parser("corpus", help="write a real demo corpus: the standard library's pydoc pages")
    p.add_argument("folder", metavar="DIR")
    p.add_argument("--size-mb", type=float, default=1.0)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    files = write_stdlib_corpus(args.folder, int(args.size_mb * 2**20))
    size = sum(f.stat().st_size for f in files)
    print(f"wrote {len(files)} files, {size / 2**20:.2f} MiB of pydoc text to {args.folder}")
    return EXIT_OK
