"""Stock `run_transformations`, with the cache, run as aaflow segments.

The transformations are cut into segments (see `locality.py`): a run of document-local ones
streams through aaflow's executor as one workflow (batches cut at document boundaries,
stages overlapping); any other transformation is called once on the whole list, exactly as
stock calls it, and its return value goes on as it is (a tuple stays a tuple). Before every
transformation the cache is consulted as stock does, and every transformation's output is
stored under stock's key.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.schema import BaseNode, TransformComponent

from aaflow_adapters.errors import name_items
from aaflow_adapters.llamaindex.cache import StepCache
from aaflow_adapters.llamaindex.engine import EngineOptions, stream
from aaflow_adapters.llamaindex.locality import document_local, segment_end
from aaflow_adapters.llamaindex.remote_llm import with_routed_llm
from aaflow_adapters.llamaindex.steps import RunCoro, checked_nodes
from aaflow_adapters.llamaindex.vector import Segment


@dataclass
class Outcome:
    """The output nodes (with the embedding step's Arrow columns) and the run's accounting."""

    segments: list[Segment]
    returned: Sequence[BaseNode] | None = None  # the last step's own return value, when it ran whole
    cache_hits: int = 0
    stage_busy_s: dict[str, float] = field(default_factory=dict)

    def nodes(self) -> Sequence[BaseNode]:
        if self.returned is not None:
            return self.returned
        return [n for s in self.segments for n in s.nodes]


@dataclass
class Run:
    """One call of the transformations on one list of nodes."""

    transforms: Sequence[TransformComponent]
    cache: StepCache | None
    opts: EngineOptions
    kwargs: dict[str, Any]
    run_coro: RunCoro | None
    show_progress: bool = False

    def __call__(self, nodes: Sequence[BaseNode]) -> Outcome:
        out = Outcome([Segment(list(nodes))], returned=nodes)
        pos, key = 0, None
        while True:
            if self.cache is not None:
                nodes, served, key = self.cache.serve_prefix(nodes, self.transforms[pos:])
                if served:  # cache hits come back as lists of copies, as in stock
                    out.segments, out.returned = [Segment(list(nodes))], nodes
                out.cache_hits += served
                pos += served
            if pos == len(self.transforms):
                return out
            end = segment_end(self.transforms, pos) if nodes else pos + 1
            if end == pos + 1 and not self._streams(pos, nodes):
                nodes = self._whole(pos, nodes)
                if self.cache is not None and key is not None:
                    self.cache.put(key, nodes)
                out.segments, out.returned = [Segment(list(nodes))], nodes
                pos += 1
                continue
            nodes, pos = self._stream(pos, end, nodes, key, out)

    def _streams(self, pos: int, nodes: Sequence[BaseNode]) -> bool:
        return bool(nodes) and document_local(self.transforms[pos])

    def _whole(self, pos: int, nodes: Sequence[BaseNode]) -> Sequence[BaseNode]:
        """Stock's call: the whole list (the previous step's own return value), once."""
        transform = with_routed_llm(self.transforms[pos])  # an OpenAI/OpenAILike `llm`: through the remote client
        label = f"transformations[{pos}] ({type(transform).__name__})"
        try:
            if self.run_coro is not None:
                result = self.run_coro(transform.acall(nodes, **self.kwargs))
            else:
                result = transform(nodes, **self.kwargs)
        except Exception as exc:
            docs = name_items(sorted({n.ref_doc_id or n.node_id for n in nodes}))
            exc.add_note(f"aaflow: {label} failed, called once on all {len(nodes)} nodes (of {docs or 'no documents'})")
            raise
        checked = checked_nodes(result, label, nodes)
        return result if isinstance(result, (list, tuple)) else checked

    def _stream(self, pos: int, end: int, nodes: Sequence[BaseNode], key: str | None,
                out: Outcome) -> tuple[Sequence[BaseNode], int]:
        """Stream `transforms[pos:end]`; returns the nodes after it and where to go on."""
        result = stream(nodes, self.transforms[pos:end], self.opts, first_key=key, record_cache=self.cache is not None,
                        kwargs=self.kwargs, run_coro=self.run_coro, show_progress=self.show_progress, offset=pos)
        out.stage_busy_s.update(result.stage_busy_s)
        out.segments, out.returned = result.segments, None
        if self.cache is None:
            return [n for s in result.segments for n in s.nodes], end
        if result.failed is not None:  # only with the cache on: the steps before it are complete
            index, error = result.failed
            resume = self.cache.write_before_failure(result.records, index)
            if resume is None:
                raise error
        else:
            resume = self.cache.write(result.records)
            if resume is None:
                return [n for s in result.segments for n in s.nodes], end
        step, cached = resume  # stock would have found this step in the cache: go on from there
        out.cache_hits += 1
        out.segments, out.returned = [Segment(list(cached))], cached
        return cached, pos + step + 1
