"""Dual-path retrieval: hits from a knowledge index and from agent memory merged into one ranking.

The paper's agent retrieves from its knowledge index and its memory index and reasons over both.
`DualRetriever` is a LangChain retriever (so `create_retriever_tool` makes it an agent tool) whose
documents are ranked by one documented score:

    score = semantic * similarity + source bonus (knowledge | memory) + recency * 0.5 ** (age / half_life)

`similarity` is the knowledge store's relevance score (`similarity_search_with_relevance_scores`,
0..1 by the store's own `relevance_score_fn`) or the memory store's cosine score; `age` is the time
since a memory was last updated (knowledge documents carry no recency term). Equal scores keep
knowledge first, then memory, each in its own order.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from langgraph.store.base import BaseStore, SearchItem


@dataclass(frozen=True)
class MergeWeights:
    """The weights of the merged score (defaults: similarity decides, a fresh memory gets a small lift)."""

    semantic: float = 1.0
    knowledge: float = 0.0
    memory: float = 0.0
    recency: float = 0.1
    half_life_s: float = 24 * 3600.0


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class DualRetriever(BaseRetriever):
    """`k` knowledge hits and `k` memory hits (under `namespace`), merged and cut to `k` by `weights`."""

    knowledge: VectorStore
    store: BaseStore
    namespace: tuple[str, ...]
    k: int = 4
    weights: MergeWeights = MergeWeights()
    text_field: str = "text"
    clock: Callable[[], datetime] = _utcnow

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        docs = self.knowledge.similarity_search_with_relevance_scores(query, k=self.k)
        return self._merge(docs, self.store.search(self.namespace, query=query, limit=self.k))

    async def _aget_relevant_documents(self, query: str, *,
                                       run_manager: AsyncCallbackManagerForRetrieverRun) -> list[Document]:
        docs = await self.knowledge.asimilarity_search_with_relevance_scores(query, k=self.k)
        return self._merge(docs, await self.store.asearch(self.namespace, query=query, limit=self.k))

    def _merge(self, docs: list[tuple[Document, float]], memories: list[SearchItem]) -> list[Document]:
        w, now = self.weights, self.clock()
        ranked: list[tuple[float, Document]] = []
        for doc, sim in docs:
            score = w.semantic * sim + w.knowledge
            ranked.append((score, Document(page_content=doc.page_content, id=doc.id,
                                           metadata={**doc.metadata, "origin": "knowledge", "similarity": sim,
                                                     "score": score})))
        for item in memories:
            sim = item.score or 0.0
            age = max(0.0, (now - item.updated_at).total_seconds())
            score = w.semantic * sim + w.memory + w.recency * 0.5 ** (age / w.half_life_s)
            text = item.value.get(self.text_field)
            ranked.append((score, Document(page_content=text if isinstance(text, str) else json.dumps(item.value),
                                           metadata={"origin": "memory", "namespace": item.namespace, "key": item.key,
                                                     "similarity": item.score, "score": score,
                                                     "updated_at": item.updated_at.isoformat()})))
        ranked.sort(key=lambda pair: -pair[0])  # stable: knowledge, then memory, on equal scores
        return [doc for _, doc in ranked[: self.k]]
