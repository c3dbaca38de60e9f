"""The suite's machinery: one worker process per side, runs alternated, medians and spread.

A side is a `setup(**params) -> run` function named "module:function". Each side gets its own
spawned worker process (fresh interpreter, its model loaded and warmed by `setup`, untimed);
the parent then asks the workers for one run at a time, in alternating order (A B C, C B A,
...), so load from elsewhere on the machine hits every side alike. Only small dicts cross the
pipe: parameters in, a result dict out.
"""
from __future__ import annotations

import importlib
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


def _worker(conn: Any, target: str, params: dict[str, Any]) -> None:
    """Child process: set up once, then one run per request until told to stop."""
    try:
        run = _resolve(target)(**params)
        conn.send({"ready": True})
    except BaseException:  # noqa: BLE001 - reported to the parent, which records it
        conn.send({"error": traceback.format_exc(limit=4)[-1500:]})
        return
    while conn.recv() == "run":
        try:
            conn.send(run())
        except BaseException:  # noqa: BLE001
            conn.send({"error": traceback.format_exc(limit=4)[-1500:]})


class Worker:
    """A spawned process holding one side, ready to run it on request."""

    def __init__(self, name: str, target: str, params: dict[str, Any], timeout_s: float) -> None:
        self.name, self.timeout_s = name, timeout_s
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, target, params), name=f"bench-{name}")
        self.proc.start()
        self.setup_error = self._receive().get("error")

    def _receive(self) -> dict[str, Any]:
        if not self.conn.poll(self.timeout_s):
            self.proc.kill()
            return {"error": f"{self.name}: no answer within {self.timeout_s:.0f} s"}
        try:
            return self.conn.recv()
        except EOFError:
            return {"error": f"{self.name}: worker exited with code {self.proc.exitcode}"}

    def run(self) -> dict[str, Any]:
        if self.setup_error or not self.proc.is_alive():
            return {"error": self.setup_error or f"{self.name}: worker is gone"}
        self.conn.send("run")
        return self._receive()

    def close(self) -> None:
        if self.proc.is_alive():
            self.conn.send("stop")
            self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()


def spread(values: list[float]) -> dict[str, Any]:
    """Median and spread of one side's repetitions (every value kept)."""
    if not values:
        return {}
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "iqr": q[2] - q[0], "values": values}


def side_by_side(sides: dict[str, tuple[str, dict[str, Any]]], repeats: int, *, timeout_s: float = 900.0,
                 metric: str = "wall_s", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every side `repeats` times, alternating order; per side: every run and the metric's spread."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    workers: dict[str, Worker] = {}
    try:
        for name, (target, params) in sides.items():  # one at a time: setups do not compete for the cores
            workers[name] = Worker(name, target, params, timeout_s)
        names = list(sides)
        for rep in range(repeats):
            for name in (names if rep % 2 == 0 else names[::-1]):
                runs[name].append(workers[name].run())
                r = runs[name][-1]
                log(f"  {name:28} rep {rep}: " + (f"{r[metric]:.3f}s" if metric in r else str(r.get("error"))[-200:]))
    finally:
        for w in workers.values():
            w.close()
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
