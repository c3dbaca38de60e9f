"""Which transformations may see the input in pieces, and which must see the whole list.

Stock calls every transformation once, on the whole list of nodes. aaflow streams a
transformation over batches (cut only at document boundaries) only when its output for a
document depends on that document's nodes alone:

- LlamaIndex's own node parsers (classes in `llama_index.core.node_parser`), which parse each
  input node on its own and link prev/next only between children of the same node;
- `KeywordExtractor` and `QuestionsAnsweredExtractor`, which look at one node at a time;
- an embedding model (`BaseEmbedding`) whose `__call__`/`acall` are LlamaIndex's own;
- any class that declares `aaflow_document_local: ClassVar[bool] = True`.

Everything else sees exactly the list stock gives it, in one call: user components (a dedup
across the list), `SummaryExtractor` (neighbours' summaries), `TitleExtractor` (groups nodes by
document), subclasses of the classes above defined elsewhere (they may override the parsing),
and an embedding class that overrides `__call__`/`acall`. A class can also declare
`aaflow_document_local: ClassVar[bool] = False` to be treated as whole-list.
"""
from __future__ import annotations

import inspect
from collections.abc import Sequence

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.node_parser import NodeParser
from llama_index.core.schema import TransformComponent

LOCAL_FLAG = "aaflow_document_local"
_PARSERS = "llama_index.core.node_parser"
_LOCAL_EXTRACTORS = {("llama_index.core.extractors.metadata_extractors", "KeywordExtractor"),
                     ("llama_index.core.extractors.metadata_extractors", "QuestionsAnsweredExtractor")}


def is_embedding(transform: TransformComponent) -> bool:
    """An embedding model aaflow may call batch by batch: LlamaIndex's own `__call__`/`acall`."""
    cls = type(transform)
    return isinstance(transform, BaseEmbedding) and all(  # unwrapped: LlamaIndex wraps methods per subclass
        inspect.unwrap(getattr(cls, m)) is inspect.unwrap(getattr(BaseEmbedding, m)) for m in ("__call__", "acall"))


def document_local(transform: TransformComponent) -> bool:
    """True when the transformation's output for one document depends on that document's nodes only."""
    declared = getattr(type(transform), LOCAL_FLAG, None)
    if declared is not None:
        return bool(declared)
    cls = type(transform)
    if isinstance(transform, NodeParser):
        return cls.__module__.startswith(_PARSERS)
    return is_embedding(transform) or (cls.__module__, cls.__name__) in _LOCAL_EXTRACTORS


def segment_end(transforms: Sequence[TransformComponent], start: int) -> int:
    """One past the last transformation of the segment starting at `start`.

    A run of document-local transformations streams together; a whole-list one is a
    segment by itself.
    """
    if not document_local(transforms[start]):
        return start + 1
    end = start + 1
    while end < len(transforms) and document_local(transforms[end]):
        end += 1
    return end
