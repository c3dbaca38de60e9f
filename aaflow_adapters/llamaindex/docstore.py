"""Docstore decisions that survive a failed run.

Stock decides what to run from the docstore's hashes and acts on the decision at once:
`duplicates_only` records the new hashes before transforming, the upsert strategies delete a
changed document's old nodes (docstore and vector store) before transforming. A run that then
fails leaves the docstore claiming documents it never stored (a retry skips them), or the old
version deleted with no new one. aaflow takes the same decisions by the same rules here,
without writing, and calls stock's own handlers for their writes only once the
transformations have succeeded; after a successful run the stores are exactly stock's.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from llama_index.core.schema import BaseNode


def ref_id(node: BaseNode) -> str:
    """The document a node belongs to, as the upsert strategies key it."""
    return node.ref_doc_id if node.ref_doc_id else node.id_


def upsert_choice(nodes: Sequence[BaseNode], hashes: Mapping[str, str | None]) -> list[BaseNode]:
    """`_handle_upserts`'s choice: nodes of new documents and of changed ones (`hashes`: stored hash per ref id).

    A changed document's hash is gone once stock has deleted its old nodes, so its later
    nodes count as new, as they do in stock.
    """
    deleted: set[str] = set()
    chosen = []
    for node in nodes:
        ref = ref_id(node)
        stored = None if ref in deleted else hashes.get(ref)
        if stored and stored != node.hash:
            deleted.add(ref)
        if not stored or stored != node.hash:
            chosen.append(node)
    return chosen


def duplicate_choice(nodes: Sequence[BaseNode], existing: Mapping[str, str]) -> list[BaseNode]:
    """`_handle_duplicates`'s choice: the first node of each hash the docstore does not hold yet."""
    seen: set[str] = set()
    chosen = []
    for node in nodes:
        if node.hash not in existing and node.hash not in seen:
            chosen.append(node)
            seen.add(node.hash)
    return chosen


@dataclass(frozen=True)
class HashedInput:
    """What stock's docstore handlers read of an input node, as it was before the transformations.

    Stock runs its handlers before transforming; aaflow runs them after, so a transformation that
    edits the input documents in place must not change the hashes they see.
    """

    id_: str
    ref_doc_id: str | None
    hash: str


def snapshot(nodes: Sequence[BaseNode]) -> list[HashedInput]:
    return [HashedInput(n.id_, n.ref_doc_id, n.hash) for n in nodes]
