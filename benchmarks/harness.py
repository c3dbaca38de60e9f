"""The suite's machinery: one worker process per side, runs alternated, medians and spread.

A side is a `setup(**params) -> run` function named "module:function". Sides run in spawned
worker processes, one per framework for the whole suite (LangChain, LlamaIndex, aaflow native:
each imported and its model loaded once, not once per side and case); `setup` loads and warms
what the side needs, untimed. The parent then asks for one run at a time, in alternating order
(A B C, C B A, ...), so load from elsewhere on the machine hits every side alike. Only small
dicts cross the pipe: parameters in, a result dict out.
"""
from __future__ import annotations

import gc
import importlib
import itertools
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Idle OpenMP threads sleep instead of spinning: on a shared CPU spinning torch threads slow
# batched encodes several-fold. The same for every side; recorded in the results.
CHILD_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
             "OMP_WAIT_POLICY": "PASSIVE"}


def prepare_env() -> dict[str, str]:
    """Environment every worker inherits (spawned children copy os.environ at start)."""
    os.environ.update(CHILD_ENV)
    try:
        import llama_index.core

        tiktoken = Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache"
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(tiktoken))
    except ImportError:
        pass
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {k: os.environ[k] for k in (*CHILD_ENV, "TIKTOKEN_CACHE_DIR") if k in os.environ}


def _resolve(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def group_of(target: str) -> str:
    """Sides of one framework share a worker: its imports and model load are paid once per suite."""
    return next((word for word in ("langchain", "llamaindex") if word in target), "aaflow")


def _worker(conn: Any) -> None:
    """Child process: holds any number of sides, set up on request, and runs one at a time."""
    sides: dict[str, Callable[[], dict[str, Any]]] = {}
    while (msg := conn.recv())[0] != "stop":
        op, key, *rest = msg
        try:
            if op == "setup":
                target, params = rest
                sides[key] = _resolve(target)(**params)
                conn.send({"ready": True})
            elif op == "run":
                conn.send(sides[key]())
            else:  # drop: the side's stores and corpora go; the shared models stay loaded
                sides.pop(key, None)
                gc.collect()
                conn.send({"dropped": True})
        except BaseException:  # noqa: BLE001 - reported to the parent, which records it
            conn.send({"error": traceback.format_exc(limit=4)[-1500:]})


class Worker:
    """A spawned process holding one framework's sides (fresh interpreter, started once per suite)."""

    def __init__(self, group: str, timeout_s: float) -> None:
        self.group, self.timeout_s = group, timeout_s
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child,), name=f"bench-{group}")
        self.proc.start()

    def request(self, *msg: Any) -> dict[str, Any]:
        """Send one request and wait for its answer; a worker that hangs is killed (the pool starts another)."""
        try:
            self.conn.send(msg)
            if not self.conn.poll(self.timeout_s):
                self.proc.kill()
                self.proc.join()
                return {"error": f"{self.group} worker: no answer to {msg[0]} within {self.timeout_s:.0f} s"}
            return self.conn.recv()
        except (EOFError, OSError):  # the worker died (crash, out of memory) before or while answering
            self.proc.join()
            return {"error": f"{self.group} worker exited with code {self.proc.exitcode}"}

    def close(self) -> None:
        if self.proc.is_alive():
            self.conn.send(("stop", ""))
            self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()


class Pool:
    """One long-lived worker per framework for a whole suite run; a dead or hung one is replaced."""

    def __init__(self, timeout_s: float = 900.0) -> None:
        self.timeout_s = timeout_s
        self.workers: dict[str, Worker] = {}
        self._ids = itertools.count()

    def worker(self, group: str) -> Worker:
        w = self.workers.get(group)
        if w is None or not w.proc.is_alive():
            w = self.workers[group] = Worker(group, self.timeout_s)
        return w

    def setup(self, target: str, params: dict[str, Any], group: str | None = None) -> tuple[Worker, str, str | None]:
        """Set a side up in its framework's worker (or in `group`'s own): (worker, key, error or None)."""
        w, key = self.worker(group or group_of(target)), f"side-{next(self._ids)}"
        return w, key, w.request("setup", key, target, params).get("error")

    def close(self) -> None:
        for w in self.workers.values():
            w.close()
        self.workers.clear()

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def spread(values: list[float]) -> dict[str, Any]:
    """Median and spread of one side's repetitions (every value kept)."""
    if not values:
        return {}
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "iqr": q[2] - q[0], "values": values}


def side_by_side(sides: dict[str, tuple[Any, ...]], repeats: int, pool: Pool, *,
                 metric: str = "wall_s", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every side `repeats` times, alternating order; per side: every run and the metric's spread.

    A side is `(target, params)`, or `(target, params, group)` to run in a worker of its own group
    (an async side whose client binds to the first event loop it meets, for instance)."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    held: dict[str, tuple[Worker, str, str | None]] = {}
    try:
        for name, side in sides.items():  # one at a time: setups do not compete for the cores
            held[name] = pool.setup(*side)
        names = list(sides)
        for rep in range(repeats):
            for name in (names if rep % 2 == 0 else names[::-1]):
                w, key, error = held[name]
                runs[name].append({"error": error} if error else w.request("run", key))
                r = runs[name][-1]
                log(f"  {name:28} rep {rep}: " + (f"{r[metric]:.3f}s" if metric in r else str(r.get("error"))[-200:]))
    finally:
        for w, key, _ in held.values():
            if w.proc.is_alive():
                w.request("drop", key)
    return {name: {metric: spread([r[metric] for r in rs if metric in r]), "runs": rs} for name, rs in runs.items()}


def median(result: dict[str, Any], side: str, metric: str = "wall_s") -> float | None:
    return result.get(side, {}).get(metric, {}).get("median")


def speedup(result: dict[str, Any], baseline: str, ours: str, metric: str = "wall_s") -> float | None:
    """baseline median / ours median (> 1: ours is faster); None when either side failed."""
    b, o = median(result, baseline, metric), median(result, ours, metric)
    return b / o if b and o else None


def machine() -> dict[str, Any]:
    from aaflow_core.plan import package_versions

    versions = dict(package_versions())
    for pkg in ("langchain-core", "langchain-community", "langchain-huggingface", "langchain-openai",
                "llama-index-core", "aiohttp", "openai", "mpi4py"):
        try:
            from importlib.metadata import version

            versions[pkg] = version(pkg)
        except Exception:  # noqa: BLE001 - a missing optional package is just not listed
            pass
    return {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "python": platform.python_version(), "platform": platform.platform(),
            "load_avg": os.getloadavg(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "argv": sys.argv, "versions": versions}
