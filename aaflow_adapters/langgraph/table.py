"""The store's state and LangGraph's read semantics over it: get, search, list namespaces.

Items sit in insertion-ordered dicts (namespace, then key), the order `InMemoryStore` returns
unscored results in; their vectors sit in one `MutableIndex`, searched exactly within the ids of
the items a search's namespace prefix and filter kept. Scored results follow `InMemoryStore`:
cosine score descending, ties in store order, an item scored by its best vector (max pooling),
`offset`/`limit` over distinct items, unindexed items appended when a page is short.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
from langgraph.store.base import Item, ListNamespacesOp, SearchItem, SearchOp
from langgraph.store.memory import _compare_values, _does_match  # the stock filter rules, not a copy

from aaflow_adapters.langgraph.records import Namespace, Row, decode
from aaflow_core.stores import MutableIndex


@dataclass
class Entry:
    item: Item
    paths: list[str]
    ids: np.ndarray  # the item's vector ids in the index, one per path


class MemoryTable:
    """Namespaces -> keys -> entries, plus the vector index; not thread-safe (the store locks)."""

    def __init__(self, dims: int | None) -> None:
        self.namespaces: dict[Namespace, dict[str, Entry]] = {}
        self.index = MutableIndex(dims) if dims else None
        self.dims = dims or 1
        self._next_id = 0

    def __len__(self) -> int:
        return sum(len(keys) for keys in self.namespaces.values())

    def get(self, namespace: Namespace, key: str) -> Item | None:
        entry = self.namespaces.get(namespace, {}).get(key)
        return entry.item if entry else None

    def apply(self, batch: pa.RecordBatch) -> None:
        """Apply a batch of puts and deletes in order; a put replaces the item's vectors, a delete drops them.

        The batch's vectors reach FAISS in one call, as a view of its fixed_size_list column.
        """
        flat = batch.column("vectors").flatten()
        first_id = self._next_id
        self._next_id += len(flat)
        if len(flat) and self.index is not None:
            self.index.add(np.arange(first_id, self._next_id, dtype=np.int64), flat)
        stale: list[np.ndarray] = []
        start = first_id
        for row in decode(batch):
            keys = self.namespaces.setdefault(row.namespace, {})
            old = keys.pop(row.key, None) if row.value is None else keys.get(row.key)
            if old is not None:
                stale.append(old.ids)
            ids = np.arange(start, start + len(row.paths), dtype=np.int64)
            start += len(ids)
            if row.value is not None:
                item = Item(value=row.value, key=row.key, namespace=row.namespace,
                            created_at=row.created_at, updated_at=row.updated_at)
                keys[row.key] = Entry(item, row.paths, ids)
        if stale and self.index is not None:
            self.index.remove(np.concatenate(stale))

    def created_at(self, namespace: Namespace, key: str, now: datetime) -> datetime:
        entry = self.namespaces.get(namespace, {}).get(key)
        return entry.item.created_at if entry else now

    def candidates(self, op: SearchOp) -> list[Entry]:
        """Items under the prefix that pass the filter, in store order."""
        n, prefix = len(op.namespace_prefix), tuple(op.namespace_prefix)
        out = []
        for namespace, keys in self.namespaces.items():
            if namespace[:n] != prefix:
                continue
            for entry in keys.values():
                if not op.filter or all(_compare_values(entry.item.value.get(k), v) for k, v in op.filter.items()):
                    out.append(entry)
        return out

    def search(self, op: SearchOp, query: np.ndarray | None) -> list[SearchItem]:
        cands = self.candidates(op)
        if not cands:
            return []
        if query is None or self.index is None:
            return [_hit(e, None) for e in cands[op.offset: op.offset + op.limit]]
        pooled = self._pooled(cands, query, op.offset + op.limit if min(op.offset, op.limit) >= 0 else None)
        kept = [(score, e) for ix, (score, e) in enumerate(pooled) if op.offset <= ix < op.offset + op.limit]
        scoreless = [e for e in cands if not len(e.ids)]
        if scoreless and len(kept) < op.limit:
            kept.extend((None, e) for e in scoreless[: op.limit - len(kept)])
        return [_hit(e, score) for score, e in kept]

    def _pooled(self, cands: list[Entry], query: np.ndarray, need: int | None) -> list[tuple[float, Entry]]:
        """Distinct items by best score (ties: store order), at least the first `need` of them (None: all)."""
        assert self.index is not None
        ids = np.concatenate([e.ids for e in cands])
        if not len(ids) or need == 0:
            return []
        owner = np.repeat(np.arange(len(cands)), [len(e.ids) for e in cands])
        by_id = np.argsort(ids)
        fetch = len(ids) if need is None else min(len(ids), need)
        while True:
            scores, got = self.index.search(query, ids, fetch)
            pos = by_id[np.searchsorted(ids[by_id], got)]  # each hit's place in store order
            order = np.lexsort((pos, -scores))
            scores, owners = scores[order], owner[pos[order]]
            _, first = np.unique(owners, return_index=True)
            first.sort()
            done = fetch == len(ids) or (need is not None and len(first) >= need
                                         and scores[first[need - 1]] > scores[-1])
            if done:  # nothing unfetched can outrank or tie the need-th item
                return [(float(scores[i]), cands[owners[i]]) for i in first]
            fetch = min(2 * fetch, len(ids))

    def list_namespaces(self, op: ListNamespacesOp) -> list[Namespace]:
        """Namespaces that hold items, matched, truncated to max_depth, sorted, paged."""
        names = [ns for ns, keys in self.namespaces.items() if keys]
        if op.match_conditions:
            names = [ns for ns in names if all(_does_match(c, ns) for c in op.match_conditions)]
        names = sorted({ns[: op.max_depth] for ns in names}) if op.max_depth is not None else sorted(names)
        return names[op.offset: op.offset + op.limit]

    def rows(self) -> Iterator[Row]:
        """The state as put rows in store order; an emptied namespace as a delete row, which keeps its place."""
        for namespace, keys in self.namespaces.items():
            if not keys:
                yield Row(namespace, "", None, _EPOCH, _EPOCH, [], np.zeros((0, self.dims), np.float32))
            for key, e in keys.items():
                vectors = (self.index.vectors(e.ids) if self.index is not None and len(e.ids)
                           else np.zeros((0, self.dims), np.float32))
                yield Row(namespace, key, e.item.value, e.item.created_at, e.item.updated_at, e.paths, vectors)


_EPOCH = datetime.fromtimestamp(0, timezone.utc)


def _hit(e: Entry, score: float | None) -> SearchItem:
    it = e.item
    return SearchItem(namespace=it.namespace, key=it.key, value=it.value, created_at=it.created_at,
                      updated_at=it.updated_at, score=score)
