"""`aaflow query "TEXT" --index DIR [-k 5] [--json]`: top-k chunks for a question."""
from __future__ import annotations

import argparse
import json
from typing import Any

from aaflow_core.cli.common import EXIT_FAILED, EXIT_OK, positive_int
from aaflow_core.distributed import Comm
from aaflow_core.errors import AAFlowError
from aaflow_core.pipelines import query


def register(sub: Any) -> None:
    p = sub.add_parser("query", help="retrieve the top-k chunks for a question")
    p.add_argument("text", metavar="TEXT")
    p.add_argument("--index", required=True, metavar="DIR")
    p.add_argument("-k", type=positive_int, default=5)
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    comm = Comm.world()  # under mpiexec each rank searches its shards; rank 0 prints
    comm.abort_on_uncaught()
    try:
        hits = query(args.index, [args.text], k=args.k, comm=comm)[0]
    except AAFlowError:
        if not comm.is_root:
            return EXIT_FAILED
        raise
    if not comm.is_root:
        return EXIT_OK
    if args.json:
        print(json.dumps({"query": args.text, "hits": [
            {"rank": h.rank, "score": round(float(h.score), 6), "source": h.source, "chunk_id": h.chunk_id, "text": h.text}
            for h in hits]}))
        return EXIT_OK
    print(f"query: {args.text}")
    for h in hits:
        snippet = " ".join(h.text.split())[:200]
        print(f"{h.rank}. [{h.score:.3f}] {h.source}\n   {snippet}")
    return EXIT_OK
