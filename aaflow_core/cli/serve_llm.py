"""`aaflow serve-llm [--host 127.0.0.1] [--port 8000]`: the local chat model and the bundled embedding
model behind an OpenAI-compatible API (/v1/chat/completions, /v1/embeddings), batched server-side.

Safe to expose: API keys (`--api-key-file` / AAFLOW_API_KEY) on every route but /health, limits
checked before a request queues, a bounded wait queue answered 429 with Retry-After past it, and an
access log that never holds prompts or keys. Everything is validated before the model loads.
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from aaflow_core.cli.common import EXIT_OK, non_negative_int, positive_int
from aaflow_core.errors import ConfigError

if TYPE_CHECKING:  # the serving stack is imported only when the command runs
    from aiohttp import web

    from aaflow_core.serve.auth import ApiKeys
    from aaflow_core.serve.limits import ServeLimits

ACCESS_LOGGER = "aaflow.serve.access"


def register(sub: Any) -> None:
    p = sub.add_parser("serve-llm", help="serve the local chat and embedding models over an OpenAI-compatible API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--allow-remote", action="store_true", help="permit binding a non-loopback address (needs a key)")
    p.add_argument("--api-key-file", default=None,
                   help="accepted API keys, one a line (also AAFLOW_API_KEY, comma-separated)")
    p.add_argument("--insecure-no-auth", action="store_true", help="with --allow-remote: serve without any key")
    p.add_argument("--max-new-tokens", type=positive_int, default=64, help="default when a request sets none")
    p.add_argument("--max-tokens-limit", type=positive_int, default=None,
                   help="most tokens one answer may ask for (default: what the model's context leaves)")
    p.add_argument("--max-batch", type=positive_int, default=8, help="requests decoded together (served at once)")
    p.add_argument("--max-queue", type=non_negative_int, default=64, help="requests that may wait; past it 429")
    p.add_argument("--max-body-bytes", type=positive_int, default=2 * 2**20, help="largest request body (413 above)")
    p.add_argument("--max-messages", type=positive_int, default=256, help="most messages in one chat request")
    p.add_argument("--request-timeout", type=float, default=300.0, help="seconds before a request is answered 504")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--no-embeddings", action="store_true", help="serve chat only")
    p.add_argument("--no-access-log", action="store_true", help="no per-request log lines on stderr")
    p.add_argument("--echo", action="store_true",
                   help="answer with the deterministic echo model instead of SmolLM2 (to check a client's setup)")
    p.set_defaults(handler=run)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_keys(args: argparse.Namespace) -> ApiKeys | None:
    """The keys to require (None: no authentication), after refusing an exposure without one."""
    from aaflow_core.serve.auth import KEY_ENV, load_keys

    if not is_loopback(args.host) and not args.allow_remote:
        raise ConfigError("host", args.host, "not a loopback address; pass --allow-remote to serve beyond this machine")
    keys = load_keys(args.api_key_file, os.environ.get(KEY_ENV))
    if keys is not None and args.insecure_no_auth:
        raise ConfigError("insecure-no-auth", True, "API keys are set (--api-key-file or AAFLOW_API_KEY); drop one")
    if keys is None and args.allow_remote and not args.insecure_no_auth:
        raise ConfigError("allow-remote", True, "refusing to serve beyond this machine without an API key: give "
                          "--api-key-file FILE or set AAFLOW_API_KEY (or pass --insecure-no-auth to serve openly)")
    return keys


def limits(args: argparse.Namespace) -> ServeLimits:
    from aaflow_core.serve.limits import ServeLimits

    return ServeLimits(max_body_bytes=args.max_body_bytes, max_messages=args.max_messages, max_queue=args.max_queue,
                       request_timeout_s=args.request_timeout, max_tokens_limit=args.max_tokens_limit)


def access_logger(enabled: bool) -> logging.Logger | None:
    if not enabled:
        return None
    log = logging.getLogger(ACCESS_LOGGER)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def build_app(args: argparse.Namespace, keys: ApiKeys | None, bounds: ServeLimits) -> tuple[web.Application, str]:
    """The application and the name of the model behind it (loads the models)."""
    if args.echo:
        from aaflow_core.serve import EchoChat, ModelEmbeddings, create_app

        embed = None if args.no_embeddings else ModelEmbeddings(threads=args.threads or 1)
        chat = EchoChat(default_max_tokens=args.max_new_tokens)
        return create_app(chat=chat, embeddings=embed, max_batch=args.max_batch, max_concurrency=args.max_batch,
                          keys=keys, limits=bounds), "echo"
    from aaflow_core.models.llm import LocalLLM
    from aaflow_core.serve.local_llm import local_llm_app

    llm = LocalLLM(threads=args.threads, max_batch=args.max_batch)
    app = local_llm_app(llm, embeddings=not args.no_embeddings, embed_threads=args.threads or 1,
                        max_batch=args.max_batch, default_max_tokens=args.max_new_tokens, keys=keys, limits=bounds)
    return app, llm.name


def run(args: argparse.Namespace) -> int:
    keys = api_keys(args)
    bounds = limits(args)
    from aiohttp import web

    from aaflow_core.serve.app import ACCESS_LOG_FORMAT

    app, model = build_app(args, keys, bounds)
    auth = f"{len(keys)} API key(s) required" if keys is not None else "no API key required"
    print(f"aaflow serve-llm: http://{args.host}:{args.port}/v1 (model {model}; {auth})", flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=access_logger(not args.no_access_log),
                access_log_format=ACCESS_LOG_FORMAT)
    return EXIT_OK
