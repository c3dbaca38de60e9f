"""Agent memory: N `create_agent` agents, each turn a memory search before the model call and a put after.

The same agents, questions and embedding model (the bundled all-MiniLM-L6-v2 through
`HuggingFaceEmbeddings`) run once with LangGraph's `InMemoryStore` and once with `AAFlowStore`
(on disk, every write committed). The chat model is LangChain's `ParrotFakeChatModel`, so the
store and its embeddings are what is measured. Reported per side: wall time, embedding calls and
texts, RSS growth, and every search's hits (compared across sides).

    python -m benchmarks run --suite agent_memory      (or: python benchmarks/memory_agents.py)
"""
from __future__ import annotations

import asyncio
import functools
import os
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from langchain.agents import create_agent  # noqa: E402
from langchain.agents.middleware import AgentMiddleware  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel  # noqa: E402
from langchain_core.messages import HumanMessage  # noqa: E402

TOPICS = ["my flight to Lisbon leaves on Friday", "I am allergic to peanuts", "my daughter plays the cello",
          "the quarterly report is due next Monday", "I prefer window seats", "my dentist moved to Elm Street",
          "the wifi password changed last week", "I am learning Portuguese", "my car needs new tyres",
          "the team offsite is in Porto", "I switched to a standing desk", "my sister visits in June"]
Hits = dict[tuple[str, int], list[tuple[str, float | None]]]


class Counting(Embeddings):
    """Delegates to `inner` (its async methods too) and counts calls and texts: what coalescing changes."""

    def __init__(self, inner: Embeddings) -> None:
        self.inner, self.calls, self.texts = inner, 0, 0
        self._lock = threading.Lock()

    def _count(self, n: int) -> None:
        with self._lock:
            self.calls += 1
            self.texts += n

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self._count(len(texts))
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        self._count(1)
        return self.inner.embed_query(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        self._count(len(texts))
        return await self.inner.aembed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        self._count(1)
        return await self.inner.aembed_query(text)


def question(user: int, turn: int) -> str:
    return f"user-{user}|{turn}|Remember: {TOPICS[(user * 7 + turn) % len(TOPICS)]}. What do you know about me?"


def _parse(state: Any) -> tuple[tuple[str, ...], int, str]:
    text = state["messages"][0].content
    user, turn, _ = text.split("|", 2)
    return ("memories", user), int(turn), text


class Recall(AgentMiddleware):
    """The paper's memory operator on an agent: search memory before the model call, write after it."""

    def __init__(self, hits: Hits, k: int = 3) -> None:
        super().__init__()
        self.hits, self.k = hits, k

    def _record(self, ns: tuple[str, ...], turn: int, found: list[Any]) -> None:
        self.hits[(ns[-1], turn)] = [(h.key, h.score) for h in found]

    def before_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        ns, turn, text = _parse(state)
        self._record(ns, turn, runtime.store.search(ns, query=text, limit=self.k))
        return None

    async def abefore_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        ns, turn, text = _parse(state)
        self._record(ns, turn, await runtime.store.asearch(ns, query=text, limit=self.k))
        return None

    def after_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        ns, turn, _ = _parse(state)
        runtime.store.put(ns, f"turn-{turn}", {"text": state["messages"][-1].content})
        return None

    async def aafter_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        ns, turn, _ = _parse(state)
        await runtime.store.aput(ns, f"turn-{turn}", {"text": state["messages"][-1].content})
        return None


def memory_agent(store: Any, hits: Hits) -> Any:
    return create_agent(ParrotFakeChatModel(), tools=[], middleware=[Recall(hits)], store=store)


async def run_async(agent: Any, users: int, turns: int) -> None:
    """Every user's turns in order, all users at once (asyncio)."""
    async def one(user: int) -> None:
        for turn in range(turns):
            await agent.ainvoke({"messages": [HumanMessage(question(user, turn))]})

    await asyncio.gather(*(one(u) for u in range(users)))


def run_sync(agent: Any, users: int, turns: int) -> None:
    """Turn by turn, all users at once on threads (`batch` with max_concurrency = users)."""
    for turn in range(turns):
        agent.batch([{"messages": [HumanMessage(question(u, turn))]} for u in range(users)],
                    config={"max_concurrency": users})


@functools.cache
def hf() -> Embeddings:
    from langchain_huggingface import HuggingFaceEmbeddings

    from aaflow_core.models.embedding import bundled_model_path

    model = HuggingFaceEmbeddings(model_name=str(bundled_model_path()))
    model.embed_documents(["warm up"] * 8)
    return model


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def remote(base_url: str, max_inputs: int) -> Embeddings:
    """OpenAIEmbeddings on the loopback endpoint, with a fresh async client (langchain-openai caches one per process)."""
    import httpx
    from langchain_openai import OpenAIEmbeddings

    return OpenAIEmbeddings(base_url=base_url, api_key="not-needed", model="minilm", chunk_size=max_inputs,
                            check_embedding_ctx_length=False, max_retries=0,
                            http_async_client=httpx.AsyncClient(timeout=120), http_client=httpx.Client(timeout=120))


def side(store: str, users: int = 100, turns: int = 3, micro_batch: int = 64, max_wait_ms: float = 5.0,
         max_in_flight: int = 1, base_url: str | None = None, max_inputs: int = 64) -> Callable[[], dict[str, Any]]:
    """A suite side: `store` "stock" (InMemoryStore) or "aaflow" (AAFlowStore in a fresh directory per run);
    the bundled model in process, or behind `base_url` (an OpenAI-compatible endpoint)."""
    from langgraph.store.memory import InMemoryStore

    from aaflow_adapters.langgraph import AAFlowStore

    if base_url is None:
        hf()  # loaded and warmed in setup, untimed

    def run() -> dict[str, Any]:
        embed, hits = Counting(hf() if base_url is None else remote(base_url, max_inputs)), {}
        index = {"dims": 384, "embed": embed, "fields": ["text"]}
        with tempfile.TemporaryDirectory() as tmp:
            made = (InMemoryStore(index=index) if store == "stock" else
                    AAFlowStore(os.path.join(tmp, "memory"), index=index, micro_batch=micro_batch,
                                max_wait_ms=max_wait_ms, max_in_flight=max_in_flight))
            agent, rss0 = memory_agent(made, hits), _rss_mb()
            t0, c0 = time.perf_counter(), time.process_time()
            asyncio.run(run_async(agent, users, turns))
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            rss = _rss_mb() - rss0
            if isinstance(made, AAFlowStore):
                made.close()
        ops = 2 * users * turns
        return {"wall_s": wall, "cpu_s": cpu, "embedding_calls": embed.calls, "embedded_texts": embed.texts,
                "operations": ops,
                "bound_calls": -(-ops // micro_batch), "rss_growth_mb": rss,
                "hits": {f"{u}/{t}": h for (u, t), h in sorted(hits.items())}}

    return run


def model_floor(users: int = 100, turns: int = 3, micro_batch: int = 64) -> Callable[[], dict[str, Any]]:
    """The model alone: every text the agents embed, in full micro-batches, back to back."""
    def run() -> dict[str, Any]:
        texts = [question(u, t) for t in range(turns) for u in range(users)] * 2
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(texts), micro_batch):
            hf().embed_documents(texts[i: i + micro_batch])
        return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                "embedding_calls": -(-len(texts) // micro_batch)}

    return run


def remote_floor(base_url: str, users: int = 100, turns: int = 3, max_inputs: int = 64) -> Callable[[], dict[str, Any]]:
    """The bare-client floor: the same texts as full requests, every request in flight at once from plain aiohttp."""
    def run() -> dict[str, Any]:
        import aiohttp

        texts = [question(u, t) for t in range(turns) for u in range(users)] * 2
        chunks = [texts[i: i + max_inputs] for i in range(0, len(texts), max_inputs)]

        async def go() -> None:
            async with aiohttp.ClientSession() as session:
                async def post(chunk: list[str]) -> None:
                    async with session.post(f"{base_url}/embeddings", json={"model": "minilm", "input": chunk}) as r:
                        r.raise_for_status()
                        await r.json()

                await asyncio.gather(*(post(c) for c in chunks))

        t0 = time.perf_counter()
        asyncio.run(go())
        return {"wall_s": time.perf_counter() - t0, "embedding_calls": len(chunks)}

    return run


def agreement(stock: dict[str, Any], ours: dict[str, Any], tol: float = 1e-5) -> dict[str, Any]:
    """Same hit keys for every (user, turn) search, scores within `tol`; hit lists leave the JSON here."""
    a, b = stock.pop("hits", None), ours.pop("hits", None)
    if not a or not b:
        return {"compared": 0}
    same_keys = all([k for k, _ in a[q]] == [k for k, _ in b.get(q, [])] for q in a) and a.keys() == b.keys()
    diff = max((abs(x - y) for q in a for (_, x), (_, y) in zip(a[q], b.get(q, [])) if x is not None and y is not None),
               default=0.0)
    return {"compared": len(a), "same_hits": same_keys, "max_abs_score_diff": diff, "within_tol": diff <= tol}


if __name__ == "__main__":
    import json

    runs = {"InMemoryStore": side("stock")(), "AAFlowStore": side("aaflow")()}
    runs["AAFlowStore"]["speedup"] = runs["InMemoryStore"]["wall_s"] / runs["AAFlowStore"]["wall_s"]
    print(json.dumps({"agreement": agreement(runs["InMemoryStore"], runs["AAFlowStore"]), "runs": runs}, indent=1))
