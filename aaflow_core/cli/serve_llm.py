"""`aaflow serve-llm [--host 127.0.0.1] [--port 8000]`: the local chat model and the bundled embedding
model behind an OpenAI-compatible API (/v1/chat/completions, /v1/embeddings), batched server-side."""
from __future__ import annotations

import argparse
import ipaddress
from typing import Any

from aaflow_core.cli.main import EXIT_OK, positive_int
from aaflow_core.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser("serve-llm", help="serve the local chat and embedding models over an OpenAI-compatible API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--allow-remote", action="store_true", help="permit binding a non-loopback address")
    p.add_argument("--max-new-tokens", type=positive_int, default=64, help="default when a request sets none")
    p.add_argument("--max-batch", type=positive_int, default=8, help="requests decoded together")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--no-embeddings", action="store_true", help="serve chat only")
    p.set_defaults(handler=run)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    if not is_loopback(args.host) and not args.allow_remote:
        raise ConfigError("host", args.host, "not a loopback address; pass --allow-remote to serve beyond this machine")
    from aiohttp import web

    from aaflow_core.models.llm import LocalLLM
    from aaflow_core.serve.local_llm import local_llm_app

    llm = LocalLLM(threads=args.threads, max_batch=args.max_batch)
    app = local_llm_app(llm, embeddings=not args.no_embeddings, embed_threads=args.threads or 1,
                        max_batch=args.max_batch, default_max_tokens=args.max_new_tokens)
    print(f"aaflow serve-llm: http://{args.host}:{args.port}/v1 (model {llm.name})", flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None)
    return EXIT_OK
