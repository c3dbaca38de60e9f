"""AAFlowStore vs InMemoryStore on the same operations and embeddings: same items, order, scores.

langgraph ships no reusable store conformance suite (langgraph-checkpoint-conformance covers
checkpointers only; the store tests in its repository target InMemoryStore and are not installed),
so every behaviour here is checked by running both stores side by side and comparing results.
"""
from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langgraph.store.base import GetOp, ListNamespacesOp, MatchCondition, PutOp, SearchOp
from langgraph.store.memory import InMemoryStore

from aaflow_adapters.errors import DocumentFieldError, EmbeddingDimError
from aaflow_adapters.langgraph import AAFlowStore
from aaflow_adapters.langgraph.store import StoreClosedError
from tests.adapters.langgraph.conftest import DIMS, assert_same

WORDS = "apple car house book phone red blue green memory agent tool plan note".split()
NAMESPACES = [("users", "a"), ("users", "b"), ("users", "a", "prefs"), ("docs",), ("docs", "x", "y")]


def both(pair: tuple[InMemoryStore, AAFlowStore], ops: list[Any], mode: str = "sync") -> None:
    stock, ours = pair
    if mode == "sync":
        expected, got = stock.batch(ops), ours.batch(ops)
    else:
        expected, got = asyncio.run(stock.abatch(ops)), asyncio.run(ours.abatch(ops))
    assert len(got) == len(expected)
    for s, o in zip(expected, got):
        assert_same(s, o)


def test_every_op_kind_in_one_batch(pair: tuple[InMemoryStore, AAFlowStore]) -> None:
    both(pair, [PutOp(("u", "1"), "k1", {"text": "red apple", "n": 1}),
                PutOp(("u", "1"), "k2", {"text": "blue car", "n": 2, "notes": ["fast", "old"]}),
                PutOp(("u", "2"), "k3", {"text": "green house", "n": 3}, index=False)])
    both(pair, [GetOp(("u", "1"), "k1"), GetOp(("u", "1"), "missing"),
                SearchOp(("u",), None, 10, 0, "apple"), SearchOp(("u",), {"n": {"$gte": 2}}, 10, 0, "car"),
                SearchOp(("u", "1"), None, 10, 0, None), ListNamespacesOp(None, None, 100, 0),
                PutOp(("u", "1"), "k4", {"text": "later"}),  # reads in this batch do not see it
                SearchOp(("u",), None, 10, 0, "later")])
    both(pair, [SearchOp(("u",), None, 10, 0, "later"), GetOp(("u", "1"), "k4")])


def _value(rng: random.Random, shape: tuple[int, bool], serial: int) -> dict[str, Any]:
    """Every text carries a serial number, so no two stored vectors are equal (ties: see below)."""
    notes, _ = shape
    value: dict[str, Any] = {"text": " ".join(rng.choices(WORDS, k=rng.randint(1, 3))) + f" #{serial}",
                             "color": rng.choice(["red", "blue", "green"]), "n": rng.randint(0, 9),
                             "meta": {"lang": rng.choice(["en", "fr"])}}
    if notes:
        value["notes"] = [f"{rng.choice(WORDS)} #{serial}.{i}" for i in range(notes)]
    return value


def _filter(rng: random.Random) -> dict[str, Any] | None:
    return rng.choice([None, None, {"color": "red"}, {"n": {"$gt": 4}}, {"n": {"$lte": 3}, "color": "blue"},
                       {"meta": {"lang": "fr"}}, {"n": {"$ne": 5}}, {"color": {"$eq": "green"}}])


def random_ops(seed: int, steps: int) -> list[list[Any]]:
    """Batches of random ops, kept where both stores' contracts agree (see docs/memory.md, differences).

    Stored texts are unique: among equal vectors InMemoryStore's order is float64 rounding noise
    (numpy's matrix-vector product), while here exact ties come in store order (tested below).
    A key keeps its shape (note count, index mode) until deleted, so a re-put overwrites every
    vector path; each namespace keeps one item that is never deleted; gets name touched namespaces.
    """
    rng, serial = random.Random(seed), itertools.count()
    shapes: dict[tuple[tuple[str, ...], str], tuple[int, bool]] = {}
    batches: list[list[Any]] = [[PutOp(ns, "anchor", {"text": "anchor " + ns[-1], "n": 0}) for ns in NAMESPACES]]
    for _ in range(steps):
        batch: list[Any] = []
        for _ in range(rng.randint(1, 4)):
            ns, key = rng.choice(NAMESPACES), f"k{rng.randint(0, 7)}"
            roll = rng.random()
            if roll < 0.4:
                shape = shapes.setdefault((ns, key), (rng.choice([0, 0, 1, 2]), rng.random() < 0.2))
                batch.append(PutOp(ns, key, _value(rng, shape, next(serial)), index=False if shape[1] else None))
            elif roll < 0.5:
                shapes.pop((ns, key), None)
                batch.append(PutOp(ns, key, None))
            elif roll < 0.85:
                prefix = ns[: rng.randint(0, len(ns))]
                query = rng.choice([None, " ".join(rng.choices(WORDS, k=rng.randint(1, 3)))])
                batch.append(SearchOp(prefix, _filter(rng), rng.choice([1, 2, 3, 10]), rng.choice([0, 0, 1, 4]), query))
            elif roll < 0.93:
                batch.append(GetOp(ns, key))
            else:
                conds = tuple(rng.sample([MatchCondition("prefix", ("users",)), MatchCondition("suffix", ("y",)),
                                          MatchCondition("prefix", ("*", "a"))], rng.randint(0, 1)))
                batch.append(ListNamespacesOp(conds, rng.choice([None, 1, 2]), rng.choice([2, 100]), rng.choice([0, 1])))
        batches.append(batch)
    return batches


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_random_sequences_match(pair: tuple[InMemoryStore, AAFlowStore], mode: str) -> None:
    for batch in random_ops(seed=7 if mode == "sync" else 11, steps=150):
        both(pair, batch, mode)


def test_list_namespaces(pair: tuple[InMemoryStore, AAFlowStore]) -> None:
    names = [("a", "b", "c"), ("a", "b", "d", "e"), ("a", "b", "d", "i"), ("a", "b", "f"), ("a", "c", "f"),
             ("b", "a", "f"), ("users", "123"), ("users", "456", "settings"), ("admin", "users", "789")]
    both(pair, [PutOp(ns, f"id_{i}", {"data": f"value_{i:02d}"}) for i, ns in enumerate(names)])
    for prefix, suffix, depth, limit, offset in [
            (("a", "b"), None, None, 100, 0), (None, ("f",), None, 100, 0), (("a",), ("f",), None, 100, 0),
            (("a", "b"), None, 3, 100, 0), (("a", "b"), None, None, 2, 0), (("a", "b"), None, None, 100, 2),
            (("a", "*", "f"), None, None, 100, 0), (None, ("*", "f"), None, 100, 0), (("nonexistent",), None, None, 100, 0),
            (None, None, 2, 100, 0), (None, None, None, 3, 4)]:
        conds = tuple(c for c in (MatchCondition("prefix", prefix) if prefix else None,
                                  MatchCondition("suffix", suffix) if suffix else None) if c)
        both(pair, [ListNamespacesOp(conds, depth, limit, offset)])
    stock, ours = pair
    assert ours.list_namespaces(prefix=("a", "b"), max_depth=3) == [("a", "b", "c"), ("a", "b", "d"), ("a", "b", "f")]


def test_filters_and_pagination(pair: tuple[InMemoryStore, AAFlowStore]) -> None:
    docs = [("doc1", {"text": "red apple", "color": "red", "score": 4.5, "tags": ["a", "b"]}),
            ("doc2", {"text": "red car", "color": "red", "score": 3.0, "tags": ["a"]}),
            ("doc3", {"text": "green apple", "color": "green", "score": 4.0, "meta": {"k": 1}}),
            ("doc4", {"text": "blue car", "color": "blue", "score": 3.5, "meta": {"k": 2}})]
    both(pair, [PutOp(("test",), k, v) for k, v in docs] + [PutOp(("test",), "plain", {"color": "red", "score": 1.0}, index=False)])
    for flt in [{"color": "red"}, {"score": {"$gt": 3.2}}, {"score": {"$gte": 4.0}, "color": "green"},
                {"score": {"$lt": 4}}, {"score": {"$lte": 3.5}}, {"color": {"$ne": "red"}}, {"tags": ["a"]},
                {"meta": {"k": 2}}, {"missing": 1}, None]:
        for query in (None, "apple", "bbbbluuu"):
            for limit, offset in [(10, 0), (2, 0), (2, 2), (1, 3), (0, 0), (3, 10)]:
                both(pair, [SearchOp(("test",), flt, limit, offset, query)])


def test_field_selection_and_unindexed_items(pair: tuple[InMemoryStore, AAFlowStore]) -> None:
    both(pair, [PutOp(("f",), "whole", {"text": "ignored path", "body": "body text"}, index=["$"]),
                PutOp(("f",), "body", {"text": "not this", "body": "body text"}, index=["body"]),
                PutOp(("f",), "notes", {"text": "t", "notes": ["one note", "two note", "three"]}),
                PutOp(("f",), "first", {"notes": ["first note", "other"]}, index=["notes[0]"]),
                PutOp(("f",), "off", {"text": "body text"}, index=False),
                PutOp(("f",), "none", {"other": "no indexed field"})])
    for query in ("body text", "two note", "first note", "other", "t"):
        for limit in (1, 3, 10):
            both(pair, [SearchOp(("f",), None, limit, 0, query)])


def test_deletes(pair: tuple[InMemoryStore, AAFlowStore]) -> None:
    stock, ours = pair
    for store in pair:
        store.put(("d",), "a", {"text": "to be deleted"})
        store.put(("d",), "b", {"text": "stays"})
        store.delete(("d",), "a")
        store.batch([PutOp(("d",), "b", {"text": "stays again"}), PutOp(("d",), "c", {"text": "c"}),
                     PutOp(("d",), "c", None)])  # the last put of a key in a batch wins
    both(pair, [GetOp(("d",), "a"), GetOp(("d",), "c"), SearchOp(("d",), None, 10, 0, "to be deleted"),
                SearchOp(("d",), None, 10, 0, None)])
    assert [h.key for h in ours.search(("d",), query="to be deleted")] == ["b"]


def test_store_without_index(tmp_path: Any) -> None:
    stock, ours = InMemoryStore(), AAFlowStore(tmp_path / "plain")
    with ours:
        for store in (stock, ours):
            store.put(("n",), "1", {"text": "x", "n": 1})
            store.put(("n",), "2", {"text": "y", "n": 2}, index=["text"])  # no index: `index` has no effect
        both((stock, ours), [SearchOp(("n",), None, 10, 0, "x"), SearchOp(("n",), {"n": 2}, 10, 0, None)])
        assert ours.embedding_calls == 0


def test_reput_replaces_vectors(pair: tuple[InMemoryStore, AAFlowStore]) -> None:
    """A documented difference: a put replaces the item's vectors, also with index=False.

    InMemoryStore keeps the old vector of an item re-put with index=False, so a query for the old
    text still scores the new value; here it is unindexed, as the put asked.
    """
    stock, ours = pair
    for store in pair:
        store.put(("r",), "k", {"text": "zany zebra"})
        store.put(("r",), "k", {"text": "something else"}, index=False)
    assert ours.search(("r",), query="zany zebra")[0].score is None
    assert stock.search(("r",), query="zany zebra")[0].score == pytest.approx(1.0)


def test_same_text_twice_in_one_batch(pair: tuple[InMemoryStore, AAFlowStore]) -> None:
    """A documented difference: stock raises when one batch embeds a text twice; here it is embedded once."""
    stock, ours = pair
    ops = [PutOp(("t",), "a", {"text": "same words"}), PutOp(("t",), "b", {"text": "same words"})]
    with pytest.raises(ValueError, match="does not match number of indices"):
        stock.batch(ops)
    ours.batch(ops)
    ours.put(("t",), "c", {"text": "other words"})
    ours.put(("t",), "a", {"text": "same words"})  # an overwrite keeps the item's place
    hits = ours.search(("t",), query="same words")
    assert [h.key for h in hits] == ["a", "b", "c"]  # exact ties in store order
    assert hits[0].score == pytest.approx(1.0) and hits[1].score == hits[0].score


def test_bad_value_names_the_item_and_writes_nothing(tmp_path: Any, fake: Any) -> None:
    with AAFlowStore(tmp_path / "bad", index={"dims": DIMS, "embed": fake}) as ours:
        ours.put(("ok",), "kept", {"text": "fine"})
        with pytest.raises(DocumentFieldError, match=r"\('bad',\)/'k'.*JSON") as info:
            ours.batch([PutOp(("ok",), "other", {"text": "fine too"}), PutOp(("bad",), "k", {"when": object()})])
        assert isinstance(info.value, TypeError)  # what json (and stock serializing stores) raise
        assert ours.get(("ok",), "other") is None and ours.get(("ok",), "kept") is not None
    with AAFlowStore(tmp_path / "bad", index={"dims": DIMS, "embed": fake}) as reopened:
        assert [h.key for h in reopened.search(("ok",))] == ["kept"]


class WrongDims(DeterministicFakeEmbedding):
    """Vectors one dimension short: a misconfigured model."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [v[:-1] for v in super().embed_documents(texts)]


def test_bad_embeddings_name_the_text_and_write_nothing(tmp_path: Any) -> None:
    with AAFlowStore(tmp_path / "dims", index={"dims": DIMS, "embed": WrongDims(size=DIMS)}) as ours:
        with pytest.raises(EmbeddingDimError, match=r"text '.*hello.*'.*31 dims; the store has 32"):
            ours.put(("a",), "k", {"text": "hello"})
        with pytest.raises(EmbeddingDimError):
            asyncio.run(ours.asearch(("a",), query="hello"))
        assert ours.get(("a",), "k") is None and ours.list_namespaces() == []
    with pytest.raises(StoreClosedError, match="closed"):
        ours.get(("a",), "k")
