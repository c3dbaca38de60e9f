"""Remote LangChain cases: agents, pure remote chains, remote embeddings; stock vs aaflow on loopback endpoints.

- Agent case: `create_agent(ChatOpenAI(...), tools=[lookup])`, each input a tool call then an
  answer (two model calls, one tool call), `tool_app` answering every model call after a fixed
  latency. Sides: stock `batch` defaults, stock `max_concurrency` = aaflow's budget, aaflow
  `batch`, stock `abatch`, aaflow `abatch` (async sides on a loop the side owns).
- Remote chain case: `prompt | ChatOpenAI | StrOutputParser` (no local retrieval) against the
  EchoChat endpoint, with the floor: the same requests from a bare aiohttp client, all in flight.

Each side returns wall and CPU seconds, p50/p95 latency per input (from `batch_as_completed`)
and a hash of the answers, so the suite can check every side answered the same.
"""
from __future__ import annotations

import asyncio
import atexit
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from aiohttp import web

Result = dict[str, Any]


def tool_app(latency_s: float) -> web.Application:
    """An OpenAI-compatible chat endpoint that calls `lookup` for a question and answers from its reply."""
    app = web.Application()

    async def complete(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(latency_s)
        last = body["messages"][-1]
        if last["role"] == "tool":
            message: dict[str, Any] = {"role": "assistant", "content": f"answer: {last['content']}"}
        else:
            call_id = "call_" + hashlib.sha256(last["content"].encode()).hexdigest()[:16]
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function",
                 "function": {"name": "lookup", "arguments": json.dumps({"query": last["content"]})}}]}
        return web.json_response({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if "tool_calls" in message
                         else "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

    app.router.add_post("/v1/chat/completions", complete)
    return app


def _model(base_url: str) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(base_url=base_url, api_key="not-needed", model="bench", max_retries=0, temperature=0,
                      timeout=600)


def _digest(outputs: list[Any]) -> str:
    text = "\0".join(o if isinstance(o, str) else str(o["messages"][-1].content) for o in outputs)
    return hashlib.sha256(text.encode()).hexdigest()


class _Runner:
    """One side's way to run a batch: sync, or async on a loop this side owns for all its runs
    (langchain-openai caches its async client per process, bound to the first loop that uses it)."""

    def __init__(self, runnable: Any, mode: str, in_flight: int) -> None:
        from aaflow_adapters.langchain import AAFlowRunnable
        from aaflow_core.concurrency import LoopThread

        self.runnable = AAFlowRunnable(runnable, max_concurrency=in_flight) if mode.startswith("aaflow") else runnable
        self.config: dict[str, Any] = {"max_concurrency": in_flight} if mode == "stock_tuned" else {}
        self.loop = LoopThread("bench-side").__enter__() if mode.endswith("abatch") else None

    def batch(self, inputs: list[Any]) -> list[Any]:
        if self.loop is None:
            return self.runnable.batch(inputs, dict(self.config))
        return self.loop.run(self.runnable.abatch(inputs, dict(self.config)))

    def latencies(self, inputs: list[Any]) -> list[float]:
        t0 = time.perf_counter()
        if self.loop is None:
            return [time.perf_counter() - t0 for _ in self.runnable.batch_as_completed(inputs, dict(self.config))]

        async def collect() -> list[float]:
            return [time.perf_counter() - t0 async for _ in self.runnable.abatch_as_completed(inputs, dict(self.config))]

        return self.loop.run(collect())


def _side(runner: _Runner, inputs: list[Any]) -> Callable[[], Result]:
    runner.batch(inputs[:4])  # warm the clients and code paths

    def run() -> Result:
        t0, c0 = time.perf_counter(), time.process_time()
        outputs = runner.batch(inputs)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        lat = runner.latencies(inputs)
        return {"wall_s": wall, "cpu_s": cpu, "inputs": len(inputs), "answers_sha256": _digest(outputs),
                "latency_p50_s": float(np.percentile(lat, 50)), "latency_p95_s": float(np.percentile(lat, 95))}

    return run


def agent_side(base_url: str, mode: str, n: int, in_flight: int) -> Callable[[], Result]:
    """Suite side: `mode` is stock_default | stock_tuned | aaflow | stock_abatch | aaflow_abatch."""
    from langchain.agents import create_agent
    from langchain_core.tools import tool

    @tool
    def lookup(query: str) -> str:
        """Look a query up in the manual."""
        return f"manual page for {query[:40]}"

    agent = create_agent(_model(base_url), tools=[lookup])
    inputs = [{"messages": [("human", f"What does the manual say about topic {i}?")]} for i in range(n)]
    return _side(_Runner(agent, mode, in_flight), inputs)


def chain_side(base_url: str, mode: str, n: int, in_flight: int) -> Callable[[], Result]:
    """Suite side: `prompt | ChatOpenAI | parser`, `mode` is stock_default | stock_tuned | aaflow."""
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    chain = prompt | _model(base_url) | StrOutputParser()
    return _side(_Runner(chain, mode, in_flight), [{"q": f"question number {i} about the manual"} for i in range(n)])


def floor_side(base_url: str, n: int) -> Callable[[], Result]:
    """Suite side: the same chat requests from one bare aiohttp session, every request in flight. The
    session lives as long as the side, as aaflow's and stock's clients do, so runs after the first
    reuse its connections as theirs do (a fresh session per run would time TCP connects, not the client)."""
    import aiohttp

    from aaflow_core.concurrency import LoopThread

    loop = LoopThread("bench-floor").__enter__()
    bodies = [json.dumps({"model": "bench", "stream": False, "temperature": 0, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": f"question number {i} about the manual"}]}).encode() for i in range(n)]
    sessions: list[aiohttp.ClientSession] = []

    async def send(some: list[bytes]) -> list[str]:
        if not sessions:
            sessions.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                                  headers={"Content-Type": "application/json"}))
        s = sessions[0]

        async def one(body: bytes) -> str:
            async with s.post(f"{base_url}/chat/completions", data=body) as resp:
                return (await resp.json())["choices"][0]["message"]["content"]

        return list(await asyncio.gather(*(one(b) for b in some)))

    loop.run(send(bodies[:4]))  # warmed as the other sides are
    atexit.register(lambda: loop.run(sessions[0].close()))

    def run() -> Result:
        t0, c0 = time.perf_counter(), time.process_time()
        answers = loop.run(send(bodies))
        return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "inputs": n,
                "answers_sha256": _digest(answers)}

    return run


def embed_floor_side(corpus: str, base_url: str, chunk_size: int) -> Callable[[], Result]:
    """Suite side: the chunks `index_documents` embeds, as requests of `chunk_size` texts from one bare
    aiohttp session, every request in flight, base64 decoded to float32 (the server's own vectors)."""
    import base64
    from pathlib import Path

    import aiohttp

    from aaflow_core.concurrency import LoopThread
    from benchmarks.langchain_bench import load
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=100)
    texts = [c.page_content for c in splitter.split_documents(load(Path(corpus)))]
    bodies = [json.dumps({"model": "minilm", "encoding_format": "base64", "input": texts[i:i + chunk_size]}).encode()
              for i in range(0, len(texts), chunk_size)]
    loop = LoopThread("bench-embed-floor").__enter__()

    async def send_all() -> list[np.ndarray]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                         headers={"Content-Type": "application/json"}) as s:
            async def one(body: bytes) -> np.ndarray:
                async with s.post(f"{base_url}/embeddings", data=body) as resp:
                    data = (await resp.json())["data"]
                return np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in data])

            return list(await asyncio.gather(*(one(b) for b in bodies)))

    def run() -> Result:
        t0, c0 = time.perf_counter(), time.process_time()
        vectors = np.concatenate(loop.run(send_all()))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        h = hashlib.sha256()
        for t in texts:
            h.update(t.encode() + b"\0")
        return {"wall_s": wall, "cpu_s": cpu, "rows": len(texts), "requests": len(bodies),
                "texts_sha256": h.hexdigest(), "vectors": vectors}

    return run
