"""`SentenceSplitter`'s text splitting on the other cores: worker processes over Arrow IPC, stock's nodes.

SentenceSplitter is pure Python (nltk's punkt, tiktoken counts, regexes): one core splits at a
time, and every later stage waits on it. Splitting one text depends on that text, its metadata
string and the splitter's settings only, so worker processes run stock's own
`split_text_metadata_aware` on plain strings (Arrow record batches on pipes; nothing pickled,
no node ever leaves this process) while this process keeps everything else stock's: the
splitter's own `__call__` runs here on a private copy whose `split_text_metadata_aware` returns
the workers' answers, so `id_func`, node construction, offsets, relationships, metadata and
callback events are stock's code, in stock's order (the CHUNKING event a split fires is fired
here, with stock's payloads).

The workers are `split_worker.py` subprocesses (not
`multiprocessing`: nothing of the user's script is re-imported), started once per process in
the background; until one says it is ready, texts are split here as stock does. A text a worker
cannot split (stock would raise) is split here too, so stock's own exception comes out.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from functools import partial
from itertools import accumulate
from typing import Any, Optional

import pyarrow as pa
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import BaseNode, MetadataMode

log = logging.getLogger(__name__)
REQUEST = pa.schema([("config", pa.string()), ("text", pa.large_string()), ("metadata", pa.large_string())])
# answers: splits list<large_string>, error string (null: split), one row per request row (split_worker.py)
# A request's future holds them as Python lists, converted once on the reader thread: per text, its
# splits (None where the worker could not split it) and the worker's error (None where it could).
Answer = list[tuple[Optional[list[str]], Optional[str]]]
# The worker runs as a file, not as a module of this package: it imports llama-index-core, tiktoken
# and pyarrow only (no aaflow, no torch), and nothing of the user's script.
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "split_worker.py")
LAUNCH = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"
GROUP_CHARS = 8_000  # characters of text per request to a worker: small enough to balance, big enough to batch
SETTINGS = ("separator", "chunk_size", "chunk_overlap", "paragraph_separator", "secondary_chunking_regex")


def worker_count() -> int:
    """Worker processes: one per CPU this process may use, none on a single CPU."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cpus if cpus > 1 else 0


def splitter_config(splitter: Any) -> str | None:
    """The settings a worker rebuilds `splitter` from (JSON), or None (logged) when it cannot."""
    reason = _not_portable(splitter)
    if reason is not None:
        log.debug("aaflow: %s splits in this process: %s", type(splitter).__name__, reason)
        return None
    settings: dict[str, Any] = {k: getattr(splitter, k) for k in SETTINGS}
    settings["encoding"] = splitter._tokenizer.func.__self__.name
    return json.dumps(settings, sort_keys=True)


def _not_portable(splitter: Any) -> str | None:
    import tiktoken
    from llama_index.core.node_parser.text.utils import split_by_sentence_tokenizer

    if type(splitter) is not SentenceSplitter:
        return "only SentenceSplitter itself is split in worker processes"
    tok = splitter._tokenizer
    if not (isinstance(tok, partial) and isinstance(getattr(tok.func, "__self__", None), tiktoken.Encoding)
            and tok.func.__name__ == "encode" and not tok.args and tok.keywords == {"allowed_special": "all"}):
        return "a custom tokenizer"
    fn = splitter._chunking_tokenizer_fn
    if getattr(fn, "__code__", None) is not split_by_sentence_tokenizer().__code__:
        return "a custom chunking_tokenizer_fn"
    return None


class _Worker:
    """One subprocess: requests written in order, answers read in order by a reader thread."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", LAUNCH, WORKER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self.ready = False
        self.settled = threading.Event()  # set once the worker is ready or gone
        self.alive = True
        self.pending: deque[tuple[Future[Answer], int]] = deque()
        self.load = 0  # characters sent and not answered
        self.lock = threading.Lock()
        self.writer = pa.ipc.new_stream(self.proc.stdin, REQUEST)  # the schema goes with the first request
        threading.Thread(target=self._read, name="aaflow-split-reader", daemon=True).start()

    def send(self, config: str, texts: Sequence[str], metas: Sequence[str]) -> Future[Answer]:
        fut: Future[Answer] = Future()
        batch = pa.record_batch([pa.array([config] * len(texts), pa.string()), pa.array(texts, pa.large_string()),
                                 pa.array(metas, pa.large_string())], schema=REQUEST)
        with self.lock:
            if not self.alive:
                fut.set_exception(BrokenPipeError("split worker exited"))
                return fut
            chars = sum(map(len, texts))
            self.pending.append((fut, chars))
            self.load += chars
            try:
                self.writer.write_batch(batch)
                self.proc.stdin.flush()  # type: ignore[union-attr]
            except (OSError, ValueError) as exc:
                self._fail(exc)
        return fut

    def _read(self) -> None:
        try:
            reader = pa.ipc.open_stream(self.proc.stdout)
            reader.read_next_batch()  # the worker's "ready"
            self.ready = True
            self.settled.set()
            for batch in reader:
                with self.lock:
                    fut, chars = self.pending.popleft()
                    self.load -= chars
                fut.set_result(list(zip(batch.column(0).to_pylist(), batch.column(1).to_pylist())))
        except Exception as exc:  # the worker died or the stream ended: nothing more is sent to it
            with self.lock:
                self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self.alive = self.ready = False
        self.settled.set()
        log.debug("aaflow: a split worker stopped (%s); its texts are split in this process", exc)
        while self.pending:
            self.pending.popleft()[0].set_exception(BrokenPipeError(f"split worker exited: {exc}"))

    def close(self) -> None:
        try:
            self.writer.close()
            self.proc.stdin.close()  # type: ignore[union-attr]
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class SplitPool:
    """The process's split workers; `splits` answers what it can and leaves the rest to stock."""

    def __init__(self, workers: int) -> None:
        self.pid = os.getpid()
        self.workers = [_Worker() for _ in range(workers)]

    def splits(self, config: str, nodes: Sequence[BaseNode], splitter: Any,
               processes: int) -> dict[tuple[str, str], list[str]]:
        """(text, metadata string) -> stock's splits, for the nodes the first `processes` ready workers split."""
        ready = [w for w in self.workers[:processes] if w.ready and w.alive]
        if not ready or not nodes:
            return {}
        keys = [(n.get_content(metadata_mode=MetadataMode.NONE), splitter._get_metadata_str(n)) for n in nodes]
        sent: list[tuple[list[tuple[str, str]], Future[Answer]]] = []
        for group in _groups(keys, len(ready)):  # contiguous groups of about equal size, least loaded first
            worker = min(ready, key=lambda w: w.load)
            sent.append((group, worker.send(config, [k[0] for k in group], [k[1] for k in group])))
        return _found(sent)

    def close(self) -> None:
        for w in self.workers:
            w.close()


def _found(sent: Iterable[tuple[list[tuple[str, str]], Future[Answer]]]) -> dict[tuple[str, str], list[str]]:
    """(text, metadata string) -> splits, for every text the workers split (waiting for each answer)."""
    found: dict[tuple[str, str], list[str]] = {}
    for keys, fut in sent:
        try:
            answer = fut.result()
        except BrokenPipeError as exc:
            log.debug("aaflow: %s; splitting %d texts in this process", exc, len(keys))
            continue
        found.update((key, splits) for key, (splits, error) in zip(keys, answer) if error is None and splits is not None)
    return found


def _groups(keys: list[tuple[str, str]], n: int) -> list[list[tuple[str, str]]]:
    """`keys` cut into at most `n` contiguous groups of about equal characters."""
    total = sum(len(k[0]) for k in keys) or 1
    groups: list[list[tuple[str, str]]] = [[]]
    size = 0
    for key in keys:
        if size >= total * len(groups) / n and len(groups) < n:
            groups.append([])
        groups[-1].append(key)
        size += len(key[0])
    return [g for g in groups if g]


_pool: SplitPool | None = None
_pool_lock = threading.Lock()


def shared_pool(processes: int) -> SplitPool:
    """The process's split pool, grown to `processes` workers (started in the background)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():  # a forked child must not write to its parent's workers
            _pool = SplitPool(0)
            atexit.register(_pool.close)
        while len(_pool.workers) < processes:
            _pool.workers.append(_Worker())
        return _pool


def start_split_workers(processes: int | None = None, *, wait: bool = True, timeout_s: float = 120.0) -> int:
    """Start the split workers now (a service that ingests often; a benchmark's warm-up).

    Runs start them on their own, in the background, and split here until they are ready;
    this only moves that start earlier. Returns how many are ready (all of them once `wait`ed).
    """
    count = worker_count() if processes is None else processes
    pool = shared_pool(count)
    if wait:
        for w in pool.workers[:count]:
            w.settled.wait(timeout_s)
    return sum(1 for w in pool.workers[:count] if w.ready and w.alive)


def with_splits(splitter: Any, found: dict[tuple[str, str], list[str]]) -> Any:
    """A private copy of `splitter` that returns the workers' splits (and splits anything else itself)."""
    if not found:
        return splitter
    own = splitter.split_text_metadata_aware

    def split_text_metadata_aware(text: str, metadata_str: str) -> list[str]:
        got = found.get((text, metadata_str))
        if got is None:
            return own(text, metadata_str)
        if text == "":  # stock returns [""] before its chunking event
            return [text]
        # the CHUNKING event stock's `_split_text` fires around the split, with its payloads
        with splitter.callback_manager.event(CBEventType.CHUNKING, payload={EventPayload.CHUNKS: [text]}) as event:
            event.on_end(payload={EventPayload.CHUNKS: list(got)})
        return list(got)

    copy = splitter.model_copy()
    object.__setattr__(copy, "split_text_metadata_aware", split_text_metadata_aware)
    return copy


def presplit(splitter: Any, config: str, nodes: Sequence[BaseNode], processes: int) -> Any:
    """`with_splits` for one batch: these nodes' texts split by `processes` workers now."""
    return with_splits(splitter, shared_pool(processes).splits(config, nodes, splitter, processes))


class Prefetch:
    """The stream's input sent to the workers ahead of the splitter stage, at most `lookahead` characters.

    Workers never wait for a batch boundary: requests of about GROUP_CHARS (with a listener,
    bigger ones then smaller when the rest of the input fits in the lookahead) go out in input
    order as soon as the run starts, so the splitter stage mostly finds its batch split.
    """

    def __init__(self, splitter: Any, config: str, processes: int, nodes: Sequence[BaseNode],
                 lookahead: int, listener: Callable[[int, int, Future[Answer]], None] | None = None) -> None:
        self.pool, self.splitter, self.config, self.processes = shared_pool(processes), splitter, config, processes
        self.nodes, self.lookahead = nodes, lookahead
        # told of each request sent: (first input, end, its answer); requests are then sized for
        # the last answer (guided), not for the first batch's
        self.listener = listener
        self.position = {id(n): i for i, n in enumerate(nodes)}
        self.chars = [len(n.get_content(metadata_mode=MetadataMode.NONE)) for n in nodes]
        self.through = list(accumulate(self.chars))  # characters of inputs [0, i]
        self.next = 0  # the first input not sent yet
        self.group_of: dict[int, int] = {}  # input position -> request
        self.sent: dict[int, tuple[list[tuple[str, str]], Future[Answer], int]] = {}
        self.left: dict[int, int] = {}  # request -> its inputs no batch has taken yet
        self.outstanding = 0
        self.lock = threading.Lock()
        with self.lock:
            self._top_up(-1)

    def _top_up(self, upto: int) -> None:
        ready = [w for w in self.pool.workers[:self.processes] if w.ready and w.alive]
        if not ready:
            return
        while self.next < len(self.nodes) and (self.outstanding < self.lookahead or self.next <= upto):
            start, chars, size = self.next, 0, self._group_size(len(ready))
            while self.next < len(self.nodes) and (chars < size or self.next == start):
                chars += self.chars[self.next]
                self.next += 1
            keys = [(n.get_content(metadata_mode=MetadataMode.NONE), self.splitter._get_metadata_str(n))
                    for n in self.nodes[start:self.next]]
            worker = min(ready, key=lambda w: w.load)
            self.sent[start] = (keys, worker.send(self.config, [k[0] for k in keys], [k[1] for k in keys]), chars)
            if self.listener is not None:
                self.listener(start, self.next, self.sent[start][1])
            self.group_of.update((i, start) for i in range(start, self.next))
            self.left[start] = self.next - start
            self.outstanding += chars

    def _group_size(self, workers: int) -> int:
        """Characters for the next request: GROUP_CHARS, or when early embedding requests wait on the
        last answer and the rest of the input fits in the lookahead, a share of it that shrinks as it
        goes (guided scheduling: few round trips, and the workers finish within one small request of
        each other)."""
        unsent = self.through[-1] - (self.through[self.next - 1] if self.next else 0)
        if self.listener is None or self.outstanding + unsent > self.lookahead:
            return GROUP_CHARS
        return max(GROUP_CHARS // 2, unsent // (2 * workers))

    @property
    def all_sent(self) -> bool:
        """Every input has gone to a worker (the whole input fit in the lookahead)."""
        return self.next >= len(self.nodes)

    def splitter_for(self, nodes: Sequence[BaseNode]) -> Any:
        """The splitter to call on this batch: with the workers' splits of its texts."""
        positions = [self.position.get(id(n), -1) for n in nodes]
        with self.lock:
            last = max(positions, default=-1)
            self.next = max(self.next, min(p for p in positions if p >= 0) if last >= 0 else self.next)
            self._top_up(last)  # workers that became ready since: they take this batch and the next ones
            mine = [self.group_of.pop(p) for p in positions if p in self.group_of]
            starts = sorted(set(mine))
            requests = [self.sent[start] for start in starts]
        found = _found((keys, fut) for keys, fut, _ in requests)
        with self.lock:
            for start in mine:
                self.left[start] -= 1
                if not self.left[start]:  # every input of that request taken: its answer can go
                    del self.left[start]
                    self.outstanding -= self.sent.pop(start)[2]
            self._top_up(-1)
        return with_splits(self.splitter, found)
