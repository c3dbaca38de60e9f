"""Compile a list of LlamaIndex transformations into an aaflow workflow and stream nodes through it.

Each transformation is one stage of aaflow's streaming executor (bounded queues, stages
overlapping, input order restored by sequence keys): the node parser splits the next
documents while the embedding model encodes the current window. Between stages, cache taps
keep the stock cache's keys and entries when the cache is on. A split-worker SentenceSplitter
followed by a routed remote model sends its embedding requests as the workers answer
(embed_ahead.py).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import BaseNode, TransformComponent
from llama_index.core.utils import get_tqdm_iterable

from aaflow_core import Executor, Resources, Workflow, bind
from aaflow_core.concurrency import LoopThread
from aaflow_core.errors import AAFlowError, ConfigError
from aaflow_core.remote import Limiter, Limits, shared_client

from aaflow_adapters.llamaindex.cache import CacheTap, StepRecord
from aaflow_adapters.llamaindex.checkpoint import EmbeddingCheckpoint, checkpointed
from aaflow_adapters.llamaindex.embed_ahead import EmbedAhead
from aaflow_adapters.llamaindex.embeddings import AAFlowEmbedding
from aaflow_adapters.llamaindex.locality import is_embedding
from aaflow_adapters.llamaindex.nodes import EMBEDDING, NodeTable, source_batches
from aaflow_adapters.llamaindex.remote import endpoint_of, routed
from aaflow_adapters.llamaindex.splitpool import Prefetch, splitter_config, worker_count
from aaflow_adapters.llamaindex.steps import EmbedCaller, EmbedStep, Failure, RunCoro, TransformStep
from aaflow_adapters.llamaindex.vector import Segment

WINDOW_ROWS = 256  # nodes length-sorted together before micro-batching
# Routed models: small windows (REQUESTS_PER_WINDOW requests each), as many in flight as the
# endpoint limiter's starting window admits, so embedding starts with the first split nodes and
# no window waits for another's slowest request; the limiter (adaptive window, rpm/tpm, the
# server's headers, the shared in-flight budget) decides how many requests are out at once.
REQUESTS_PER_WINDOW = 4
LOOKAHEAD_BATCHES = 4  # input batches' worth of text a first-step SentenceSplitter sends its workers ahead


def start_window(limits: Limits) -> int:
    """Requests the remote client's limiter admits at once before it has seen an answer."""
    return int(Limiter(limits).window)


@dataclass(frozen=True)
class EngineOptions:
    """How aaflow schedules the work; none of these change which nodes come out."""

    parity: bool = False
    embed_batch_size: int | None = None
    embed_concurrency: int | None = None
    batch_chars: int = 100_000
    backend: str = "threads"
    workers: int = 1
    queue_capacity: int = 4
    checkpoint: str | None = None  # a directory: embeddings committed per micro-batch (checkpoint.py)
    split_processes: int | None = None  # SentenceSplitter worker processes; None: one per CPU (splitpool.py)

    def __post_init__(self) -> None:
        if self.parity and self.embed_batch_size is not None:
            raise ConfigError("embed_batch_size", self.embed_batch_size, "parity=True uses the model's own batch size")
        for name in ("embed_batch_size", "embed_concurrency"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(name, value, "must be >= 1 or None")
        if self.split_processes is not None and self.split_processes < 0:
            raise ConfigError("split_processes", self.split_processes, "must be >= 0 or None")
        if self.batch_chars < 1:
            raise ConfigError("batch_chars", self.batch_chars, "must be >= 1")


@dataclass
class StreamResult:
    segments: list[Segment]
    records: list[StepRecord]
    stage_busy_s: dict[str, float] = field(default_factory=dict)
    failed: tuple[int, AAFlowError] | None = None  # (step, error) when a step failed with the cache on


def is_local(model: BaseEmbedding) -> bool:
    """In-process models: aaflow's own, and those keeping their network in `_model` (HuggingFace,
    FastEmbed, ...); one call at a time already uses every core. Remote ones have neither."""
    return isinstance(model, AAFlowEmbedding) or getattr(model, "_model", None) is not None


def embed_settings(model: BaseEmbedding, opts: EngineOptions) -> tuple[BaseEmbedding, int, int, int]:
    """(model to call, micro-batch size, calls in flight, window rows) for one embedding step.

    The window is a multiple of the micro-batch size, so in parity mode the micro-batches are
    exactly stock's consecutive `embed_batch_size` slices of the global node order.
    """
    size = model.embed_batch_size if opts.embed_batch_size is None else opts.embed_batch_size
    target = model if size == model.embed_batch_size else model.model_copy(update={"embed_batch_size": size})
    # remote models that keep their own client: as many calls overlapped as aaflow's own client starts with
    concurrency = opts.embed_concurrency or (1 if is_local(model) else start_window(Limits()))
    window = size * max(math.ceil(WINDOW_ROWS / size), 2 * concurrency)
    return target, size, concurrency, window


def stream(
    nodes: Sequence[BaseNode], transforms: Sequence[TransformComponent], opts: EngineOptions, *,
    first_key: str | None, record_cache: bool, kwargs: dict[str, Any], run_coro: RunCoro | None,
    show_progress: bool = False, offset: int = 0,
) -> StreamResult:
    """Run `transforms` over `nodes`. `run_coro` given: async run (acall on the caller's loop).

    `offset`: the position of `transforms[0]` in the pipeline's list, for error messages.
    With `record_cache`, a failing step is reported in `failed` once the steps before it are done.
    """
    table = NodeTable()
    records = [StepRecord(t) for t in transforms] if record_cache else []
    if records:
        records[0].key = first_key
    failure = Failure(drain=record_cache)
    stages: list[tuple[Any, str, int | None, int]] = []  # (step, name, batch rows, workers)
    processes = worker_count() if opts.split_processes is None else opts.split_processes
    configs = [splitter_config(t) if processes and isinstance(t, SentenceSplitter) else None for t in transforms]
    with ExitStack() as stack:
        early = _embed_ahead(nodes, transforms, configs, opts, kwargs, stack)
        for i, transform in enumerate(transforms):
            if i > 0 and records:
                stages.append((CacheTap(table, records[i - 1], records[i]), f"cache-{i}", None, 1))
            name = f"{i}-{type(transform).__name__}"
            if is_embedding(transform):
                caller, window, workers, lean = _embed_caller(transform, opts, kwargs, run_coro, stack,
                                                              early if i == 1 else None)
                stages.append((EmbedStep(caller, table, in_order=opts.parity or lean, index=i, name=name,
                                         failure=failure), name, window, workers))
            else:
                label = f"transformations[{offset + i}] ({type(transform).__name__})"
                config = configs[i]
                prefetch = None if config is None or i > 0 else Prefetch(
                    transform, config, processes, nodes, LOOKAHEAD_BATCHES * opts.batch_chars,
                    listener=None if early is None else early.listen)
                if early is not None and i == 0:
                    if prefetch is not None and prefetch.all_sent:
                        early.arm()
                    else:  # the workers did not take the whole input at once: embed as the nodes come
                        early.close()
                        early = None
                stages.append((TransformStep(transform, table, kwargs, run_coro, index=i, name=name, label=label,
                                             failure=failure, split_config=config, processes=processes,
                                             prefetch=prefetch, ahead=early if i == 0 else None), name, None,
                               opts.workers if config is None else max(opts.workers, processes)))
        # the thread budget is what the stages asked for: no stage is capped below its own count
        workflow = Workflow(Resources(threads=max(w for *_, w in stages), queue_capacity=opts.queue_capacity))
        for step, name, rows, workers in stages:
            workflow.map(step, name=name, batch_size=rows, workers=workers)
        if records:
            workflow.map(CacheTap(table, records[-1], None), name="cache-out")
        segments: list[Segment] = []
        with Executor(bind(workflow.compile(), workflow.functions), backend=opts.backend,
                      queue_capacity=opts.queue_capacity) as ex:
            out = ex.run(source_batches(table, nodes, opts.batch_chars))
            for batch in get_tqdm_iterable(out, show_progress, "Applying transformations"):
                column = batch.column(EMBEDDING) if EMBEDDING in batch.schema.names else None
                segments.append(Segment(table.pop(batch), column))
    busy = {name: s.busy_s for name, s in ex.stats.items()}
    return StreamResult(segments, records, busy, failure.outcome())


def _embed_ahead(nodes: Sequence[BaseNode], transforms: Sequence[TransformComponent], configs: Sequence[str | None],
                 opts: EngineOptions, kwargs: dict[str, Any], stack: ExitStack) -> EmbedAhead | None:
    """Early embedding requests (embed_ahead.py) where a split-worker SentenceSplitter feeds a routed model;
    armed only once the whole input has gone to the workers."""
    if len(transforms) < 2 or configs[0] is None or not is_embedding(transforms[1]) or opts.checkpoint is not None:
        return None
    model = transforms[1]
    if is_local(model):
        return None
    target, size, _, _ = embed_settings(model, opts)
    lean = routed(target, opts.embed_concurrency)
    if lean is None:
        return None
    early = EmbedAhead(lean, kwargs, nodes, include_metadata=transforms[0].include_metadata, batch_size=size,
                       loop=shared_client().loop())
    stack.callback(early.close)
    return early


def _embed_caller(model: BaseEmbedding, opts: EngineOptions, kwargs: dict[str, Any], run_coro: RunCoro | None,
                  stack: ExitStack, early: EmbedAhead | None) -> tuple[EmbedCaller, int, int, bool]:
    """(caller, window rows, windows in flight, routed to the remote client) for one embedding step."""
    target, size, concurrency, window = embed_settings(model, opts)
    if early is not None:  # the early requests' routed copy: one model for both
        lean = early.model
    else:
        lean = None if is_local(model) else routed(target, opts.embed_concurrency)
    store = None if opts.checkpoint is None else stack.enter_context(EmbeddingCheckpoint(opts.checkpoint, target))
    if lean is not None:  # sync run and arun alike: on the remote client's loop, under its limiter
        window = size if opts.parity else size * REQUESTS_PER_WINDOW
        caller = EmbedCaller(checkpointed(lean, store), batch_size=size, concurrency=window // size,
                             run_coro=shared_client().run, pool=None, kwargs=kwargs, ahead=early)
        limits = endpoint_of(target, opts.embed_concurrency).limits
        return caller, window, max(1, -(-start_window(limits) // (window // size))), True
    pool = None
    if run_coro is None:  # sync run: the model's sync API on a pool, driven by a private loop
        run_coro = stack.enter_context(LoopThread("aaflow-llamaindex-embed")).run
        pool = stack.enter_context(ThreadPoolExecutor(concurrency, thread_name_prefix="aaflow-embed"))
    caller = EmbedCaller(checkpointed(target, store), batch_size=size, concurrency=concurrency, run_coro=run_coro,
                         pool=pool, kwargs=kwargs)
    return caller, window, 1, False
