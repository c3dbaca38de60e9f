"""`aaflow ingest PATH... --index DIR`: build an index, print per-phase seconds."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from aaflow_core.cli.common import (
    EXIT_FAILED, EXIT_OK, EXIT_SKIPPED, EXIT_USAGE, non_negative_int, positive_float, positive_int,
)
from aaflow_core.distributed import Comm
from aaflow_core.distributed.hosts import placement, threads_per_rank
from aaflow_core.errors import AAFlowError, ConfigError
from aaflow_core.models.modes import AUTO, ENGINES, PRECISIONS
from aaflow_core.pipelines import IngestConfig, ingest


def register(sub: Any) -> None:
    p = sub.add_parser("ingest", help="ingest text files into an index")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    p.add_argument("--index", required=True, metavar="DIR", help="index directory to write")
    p.add_argument("--chunk-size", type=positive_int, default=1000)
    p.add_argument("--chunk-overlap", type=non_negative_int, default=100)
    p.add_argument("--batch-size", type=positive_int, default=32, help="texts per model call")
    p.add_argument("--window", type=positive_int, default=256, help="chunks length-sorted together")
    p.add_argument("--files-per-batch", type=positive_int, default=16,
                   help="files loaded together (with the queues, this bounds the text in memory)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="threads per process (default: the cores, split between the MPI ranks on this node; "
                        "a rank the launcher bound to its own cores uses those)")
    p.add_argument("--glob", default=None, help="take files matching this pattern instead of known suffixes")
    p.add_argument("--overwrite", action="store_true", help="replace an existing aaflow index")
    p.add_argument("--update", action="store_true",
                   help="bring an existing index up to date: unchanged documents are skipped, changed ones "
                        "replace their chunks, new ones are added")
    p.add_argument("--resume", action="store_true",
                   help="finish an interrupted run from its checkpoint (same inputs and settings); "
                        "the result equals an uninterrupted run")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--precision", choices=(*PRECISIONS, AUTO), default="fp32",
                   help="embedding precision; bf16 falls back to fp32 (with a warning) on CPUs without native bf16; "
                        "auto (with --backend auto): the fastest mode this CPU runs within tolerance, measured once")
    p.add_argument("--backend", dest="embed_backend", choices=(*ENGINES, AUTO), default="torch",
                   help="embedding runtime: torch, onnx (ONNX Runtime) or openvino (exports cached under "
                        "~/.cache/aaflow), or auto")
    p.add_argument("--embed-url", default=None, metavar="URL",
                   help="embed through an OpenAI-compatible endpoint (base URL, e.g. http://127.0.0.1:8000/v1; "
                        "key from OPENAI_API_KEY) instead of the bundled model; queries use it too")
    p.add_argument("--embed-model", default=None, metavar="NAME", help="the endpoint's embedding model (with --embed-url)")
    p.add_argument("--rpm", type=positive_float, default=None, help="the endpoint's requests per minute, if known")
    p.add_argument("--tpm", type=positive_float, default=None, help="the endpoint's tokens per minute, if known")
    p.add_argument("--accuracy-report", action="store_true",
                   help="also embed a sample of chunks in fp32 and store the mode's accuracy in the manifest (costs a second pass)")
    p.set_defaults(handler=run)


def remote_options(args: argparse.Namespace) -> dict[str, Any]:
    """IngestConfig fields for --embed-url/--embed-model/--rpm/--tpm (the model name goes in `model`)."""
    if args.embed_url is None:
        if args.embed_model is not None:
            raise ConfigError("embed_model", args.embed_model, "names an endpoint's model; give --embed-url too")
        return {"rpm": args.rpm, "tpm": args.tpm}
    if args.embed_model is None:
        raise ConfigError("embed_url", args.embed_url, "give the endpoint's model with --embed-model")
    return {"embed_url": args.embed_url, "model": args.embed_model, "rpm": args.rpm, "tpm": args.tpm}


def run(args: argparse.Namespace) -> int:
    comm = Comm.world()  # size 1 without mpiexec; under mpiexec every rank runs this
    comm.abort_on_uncaught()
    if comm.size > 1:
        ranks = placement(comm).describe()  # collective: hydra and srun name a dead process by PID
        if comm.is_root:
            print(f"aaflow ingest: {comm.size} ranks: {ranks}", file=sys.stderr)
    threads = args.threads or threads_per_rank(comm)
    try:
        config = IngestConfig(
            paths=tuple(args.paths), index_dir=args.index, chunk_size=args.chunk_size,
            chunk_overlap=args.chunk_overlap, batch_size=args.batch_size, window=max(args.window, args.batch_size),
            threads=threads, glob=args.glob, overwrite=args.overwrite, resume=args.resume, update=args.update,
            files_per_batch=args.files_per_batch,
            progress=False if args.no_progress else None,
            precision=args.precision, embed_backend=args.embed_backend, accuracy_report=args.accuracy_report,
            **remote_options(args),
        )
    except ConfigError as exc:
        print(f"aaflow ingest: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = ingest(config, comm=comm)
    except AAFlowError:
        if not comm.is_root:  # every rank gets the same error; rank 0 reports it
            return EXIT_FAILED
        raise
    if not comm.is_root:
        return EXIT_SKIPPED if result.skipped else EXIT_OK
    m = result.manifest
    for item in result.skipped:
        print(f"aaflow ingest: skipped {item.item}: {item.reason}", file=sys.stderr)
    phases = "  ".join(f"{k}={v:.2f}s" for k, v in m["phases_s"].items())
    if "update" in m:
        u = m["update"]
        print(f"update: {u['unchanged']} unchanged, {u['changed']} changed, {u['new']} new documents; "
              f"{u['kept_not_in_input']} kept that the input does not name")
        if not u["changed"] and not u["new"]:
            print(f"index {result.index_dir} is up to date; nothing embedded")
            return EXIT_SKIPPED if result.skipped else EXIT_OK
    print(f"ingested {m['counts']['documents']} documents, {m['counts']['chunks']} chunks into {result.index_dir}")
    print(f"phases: {phases}  total={m['total_s']:.2f}s (model load {m['model_load_s']:.2f}s)")
    if comm.size > 1:
        print(f"ranks={comm.size} shards={len(m['shards'])} bytes_between_ranks={m['bytes_between_ranks']}")
        print_hosts(m)
    mode = m["embed_mode"]
    why = mode["fallback"] or (mode["auto"] or {}).get("why")
    print(f"embedding mode: {mode['label']}" + (f" ({why})" if why else ""))
    if "accuracy" in m:
        a = m["accuracy"]
        print(f"accuracy vs fp32 on {a['sampled_rows']} chunks: max|diff|={a['max_abs_diff']:.3g} "
              f"min cosine={a['min_cosine']:.5f} recall@{a['k']}={a['recall_at_k']:.3f}")
    if "remote_usage" in m:
        u = m["remote_usage"]
        print(f"endpoint {u['endpoint']}: {u['requests']} requests ({u['retries']} retries, {u['rejections']} "
              f"rate-limited), {u['prompt_tokens']} tokens")
    print(f"output_sha256={m['output_sha256']}")
    return EXIT_SKIPPED if result.skipped else EXIT_OK


def print_hosts(manifest: dict[str, Any]) -> None:
    """One line per host: its ranks, and how many models each loaded and how long that took."""
    per_rank = {r["rank"]: r for r in manifest["per_rank"]}
    for host in manifest["hosts"]:
        ranks = [per_rank[r] for r in host["ranks"]]
        loads = ", ".join(f"rank {r['rank']} loaded {r.get('models_loaded', 0)} model(s) in "
                          f"{r.get('model_load_s', 0.0):.2f}s" for r in ranks)
        print(f"host {host['host']}: {len(ranks)} rank(s); {loads}")
