"""Embedding requests sent as the split workers answer, before the nodes are built.

A `SentenceSplitter` step followed by a routed remote embedding model spends its time in
two places: splitting (worker processes, every core) and waiting on the endpoint. Stock
builds the nodes, then embeds them; aaflow's stream did the same per batch, so the last
request left only after the last batch's nodes were built, and building nodes took CPU from
the workers. Here the embedding text of each chunk is predicted from the worker's split and
its document (what `TextNode.get_content(MetadataMode.EMBED)` will return: the document's
metadata string, templates and excluded keys, as `build_nodes_from_splits` copies them), and
the micro-batch it belongs to is requested at once: batches are the consecutive
`batch_size` slices of the run's chunks in input order (stock's own slices), so which texts
share a request never depends on timing. When the whole input fits in the workers'
lookahead, the nodes are built while those requests are in flight (`wait_sent`).

The embedding step then asks `take(texts)` for each of its micro-batches: a request whose
texts are exactly the node texts is used, as if the step had sent it (its answer, or its
error after the model's own retries, naming the nodes); any other (a prediction that missed,
an input it cannot predict: nothing after that is guessed) is sent by the step as before.
After a failure the early requests not taken are cancelled, as stock sends nothing after a
failed call. Nothing here decides an output; an error while predicting only ends the guessing.
"""
from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import BaseNode, Document, MetadataMode, TextNode

from aaflow_adapters.llamaindex.splitpool import Answer

Texts = tuple[str, ...]


def chunk_text(doc: BaseNode, include_metadata: bool) -> Callable[[str], str] | None:
    """chunk -> the embedding text of the node stock builds from it (None: not predicted for this input)."""
    if type(doc) not in (Document, TextNode):
        return None
    probe = TextNode(text="", metadata=dict(doc.metadata) if include_metadata else {},
                     excluded_embed_metadata_keys=doc.excluded_embed_metadata_keys,
                     excluded_llm_metadata_keys=doc.excluded_llm_metadata_keys,
                     metadata_separator=doc.metadata_separator, metadata_template=doc.metadata_template,
                     text_template=doc.text_template)
    meta = probe.get_metadata_str(mode=MetadataMode.EMBED).strip()
    if not meta:
        return lambda chunk: chunk
    template = probe.text_template
    return lambda chunk: template.format(content=chunk, metadata_str=meta).strip()


class EmbedAhead:
    """Early requests for one run's chunks, keyed by their texts; see the module docstring.

    Worker answers arrive on the split pool's reader threads and are kept until `arm` (the
    engine arms it once the whole input went to the workers, so a run that cannot use it sends
    nothing early). Requests are started on the remote client's loop, several per wake-up, as
    tasks the embedding step awaits on that loop.
    """

    def __init__(self, model: BaseEmbedding, kwargs: dict[str, Any], docs: Sequence[BaseNode], *,
                 include_metadata: bool, batch_size: int, loop: asyncio.AbstractEventLoop) -> None:
        self.model, self.kwargs, self.loop = model, kwargs, loop
        self.docs, self.include_metadata, self.batch_size = docs, include_metadata, batch_size
        self.lock = threading.Lock()
        self.answers: dict[int, tuple[int, Future[Answer]]] = {}  # group start -> (stop, its answer)
        self.armed = False
        self.position = 0  # the first document whose chunks are not queued yet
        self.queued: list[str] = []  # predicted texts not yet in a full micro-batch
        self.to_start: list[Texts] = []  # micro-batches to request at the loop's next turn
        self.start_pending = False  # a `_start` is scheduled on the loop
        self.finished = False  # nothing more will be queued: the input's end, or guessing stopped
        # on the loop only: the requests not taken yet, per texts (a repeated micro-batch is sent
        # again, as stock sends it again)
        self.requests: dict[Texts, deque[asyncio.Task[list[list[float]]]]] = {}
        self.sent = threading.Event()  # set once nothing more will be sent early

    def listen(self, start: int, stop: int, answer: Future[Answer]) -> None:
        """A split request for documents [start, stop) went to a worker (splitpool.Prefetch calls this)."""
        answer.add_done_callback(lambda fut: self._guarded(self._answered, start, stop, fut))

    def arm(self) -> None:
        """Start guessing and sending: every input has gone to the workers."""
        self._guarded(self._arm)

    def _guarded(self, work: Callable[..., None], *args: Any) -> None:
        """Run `work` under the lock; an error (a template stock will fail on, say) ends the guessing
        here, and the step's own path meets it."""
        try:
            with self.lock:
                work(*args)
        except BaseException:
            self._finish()

    def _finish(self) -> None:
        """Nothing more is sent early; whoever waits on `sent` goes on."""
        with self.lock:
            self.finished, self.to_start = True, []
        self.sent.set()

    def _arm(self) -> None:
        self.armed = True
        self._advance()

    def _answered(self, start: int, stop: int, answer: Future[Answer]) -> None:
        if not self.finished:
            self.answers[start] = (stop, answer)
            if self.armed:
                self._advance()

    def _advance(self) -> None:
        """Queue the micro-batches of every answered document in order; schedule their start."""
        while self.position in self.answers and not self.finished:
            stop, fut = self.answers.pop(self.position)
            self._queue(self.position, stop, fut)
        if self.position >= len(self.docs) and not self.finished:
            if self.queued:
                self.to_start.append(tuple(self.queued))
            self.queued, self.finished = [], True
        if (self.to_start or self.finished) and not self.start_pending:
            self.start_pending = True
            self.loop.call_soon_threadsafe(self._start)

    def _queue(self, start: int, stop: int, fut: Future[Answer]) -> None:
        """Predict the texts of documents [start, stop) and queue every micro-batch they complete."""
        answer = None if fut.cancelled() or fut.exception() is not None else fut.result()
        if answer is None:
            return self._stop()
        for doc, (splits, error) in zip(self.docs[start:stop], answer):
            text_of = chunk_text(doc, self.include_metadata)
            if splits is None or error is not None or text_of is None:  # stock's path handles this one:
                return self._stop()  # nothing after it is known
            self.queued.extend(text_of(s) for s in splits)
            while len(self.queued) >= self.batch_size:
                self.to_start.append(tuple(self.queued[:self.batch_size]))
                del self.queued[:self.batch_size]
        self.position = stop
        return None

    def _stop(self) -> None:
        """Nothing after this point is predicted; the full micro-batches queued still go."""
        self.queued, self.finished = [], True

    def _start(self) -> None:
        """On the loop: start the queued requests. Once finished, `sent` is set two turns later: after
        the requests' first steps and those of the tasks they gather (which write the request unless
        a connection must be opened first), so the node builders do not hold the last one back."""
        with self.lock:
            starting, self.to_start, self.start_pending = self.to_start, [], False
            finished = self.finished
        for texts in starting:
            task = self.loop.create_task(self.model.aget_text_embedding_batch(list(texts), **self.kwargs))
            self.requests.setdefault(texts, deque()).append(task)
        if finished:
            self.loop.call_soon(self.loop.call_soon, self.sent.set)

    def take(self, texts: Sequence[str]) -> asyncio.Task[list[list[float]]] | None:
        """On the loop: the first early request for exactly these texts not taken yet, if any."""
        waiting = self.requests.get(tuple(texts))
        return waiting.popleft() if waiting else None

    def wait_sent(self) -> None:
        """Block until every early request has been sent (the workers have answered the whole input)."""
        self.sent.wait()

    def abandon(self) -> None:
        """On the loop, after a failed call: no more early requests, those not taken are cancelled."""
        self._finish()
        self._cancel_unused()

    def close(self) -> None:
        """Stop sending, and cancel the early requests no step took (on the loop, where they run)."""
        self._finish()
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._cancel_unused)

    def _cancel_unused(self) -> None:
        for task in (t for waiting in self.requests.values() for t in waiting):
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: an unused request's failure is nobody's error
            task.cancel()
        self.requests.clear()
