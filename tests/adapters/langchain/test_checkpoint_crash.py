"""A checkpointed `AAFlowRunnable.batch` SIGKILLed at random points, then rerun, over real HTTP on loopback.

The server counts requests per input; an input whose output was committed before a kill must
never be requested again, and the final run's outputs equal stock's uninterrupted batch.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from langchain_core.load import loads

from aaflow_core.serve import EchoChat, ServerThread, create_app
from aaflow_core.stores.journal import JOURNAL_FILE

from .checkpoint_worker import build

WORKER = Path(__file__).with_name("checkpoint_worker.py")
ROOT = Path(__file__).resolve().parents[3]


class PerInput:
    """Counts chat requests per input (`q-N` starts the last user message)."""

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.endswith("/chat/completions"):
            body = await request.json()
            last = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
            self.counts[int(last.split()[0][2:])] += 1
        return await handler(request)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, PerInput]]:
    counter = PerInput()
    app = create_app(chat=EchoChat(), latency_s=0.02)
    app.middlewares.append(counter.middleware)
    with ServerThread(app) as running:
        yield running.base_url, counter


def committed(work: Path) -> set[int]:
    """Inputs with an output in a part the journal names (what a rerun will not request again)."""
    import pyarrow.parquet as pq

    done: set[int] = set()
    lines = (work / JOURNAL_FILE).read_text().split("\n")[1:-1]
    for line in lines:
        part = json.loads(line)
        table = pq.read_table(work / f"part-{part['index']:06d}.parquet", columns=["index", "value"])
        done |= {i for i, v in zip(table["index"].to_pylist(), table["value"].to_pylist()) if v is not None}
    return done


def committed_rows(work: Path) -> int:
    try:
        return sum(json.loads(line)["rows"] for line in (work / JOURNAL_FILE).read_text().split("\n")[1:-1])
    except (OSError, ValueError, KeyError):
        return 0


def worker(kind: str, base_url: str, work: Path, n: int, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, str(WORKER), kind, base_url, str(work), str(n), str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_at(proc: subprocess.Popen, work: Path, rows: int, delay_s: float) -> bool:
    """SIGKILL once `rows` outputs are committed, `delay_s` later; False if the run ended first."""
    while committed_rows(work) < rows and proc.poll() is None:
        time.sleep(0.002)
    time.sleep(delay_s)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def crash_and_resume(kind: str, server: tuple[str, PerInput], tmp_path: Path, n: int, seed: int,
                     kills: int = 2) -> list[Any]:
    """`kills` kills at random points, then a run to the end; checks no committed input was requested twice."""
    base_url, counter = server
    rng = random.Random(seed)
    work, out = tmp_path / "ck", tmp_path / "out.json"
    counter.counts.clear()
    targets = sorted(rng.sample(range(1, n - n // 5), kills))
    at_kill: dict[int, int] = {}  # committed input -> its request count when its run was killed
    landed = 0
    for target in targets:
        proc = worker(kind, base_url, work, n, out)
        if kill_at(proc, work, target, rng.uniform(0, 0.03)):
            landed += 1
            done = committed(work)
            assert len(done) >= target and done >= set(at_kill)
            at_kill.update({i: counter.counts[i] for i in done - set(at_kill)})
    proc = worker(kind, base_url, work, n, out)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert landed >= 1
    assert set(counter.counts) == set(range(n))  # every input was requested
    twice = sorted(i for i, count in at_kill.items() if counter.counts[i] != count)
    assert not twice, f"inputs committed before a kill were requested again: {twice[:10]}"
    assert sum(counter.counts.values()) < 2 * n  # not a silent rerun of everything
    return loads(out.read_text(), allowed_objects="core")


@pytest.fixture(scope="module")
def stock_chain(server: tuple[str, PerInput]) -> list[str]:
    chain, inputs = build("chain", server[0], 400)
    return chain.batch(inputs, config={"max_concurrency": 16})


@pytest.mark.parametrize(("seed", "kills"), [(1, 2), (2, 1)])
def test_chain_batch_survives_sigkill(server: tuple[str, PerInput], stock_chain: list[str], tmp_path: Path,
                                      seed: int, kills: int) -> None:
    assert crash_and_resume("chain", server, tmp_path, 400, seed, kills) == stock_chain


def conversation(state: dict[str, Any]) -> list[tuple[str, Any]]:
    """An agent's final state without the ids and metadata that differ between any two runs."""
    return [(m.type, m.content, getattr(m, "tool_calls", None)) for m in state["messages"]]


def test_agent_batch_survives_sigkill(server: tuple[str, PerInput], tmp_path: Path) -> None:
    """A `create_agent` graph's final state per input (200 inputs: a graph step costs more client time)."""
    agent, inputs = build("agent", server[0], 200)
    expected = [conversation(s) for s in agent.batch(inputs, config={"max_concurrency": 16})]
    states = crash_and_resume("agent", server, tmp_path, 200, seed=4, kills=1)
    assert [conversation(s) for s in states] == expected
    assert all(len(s["messages"]) == 2 and s["messages"][1].content.startswith("echo: q-") for s in states)
