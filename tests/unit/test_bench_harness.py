"""The benchmark harness: sides share their framework's worker, alternate, and fail one at a time."""
from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from typing import Any

from benchmarks.harness import Pool, group_of, side_by_side

HERE = __name__
_ticks = itertools.count()  # one per worker process: the order in which runs happened there


def ticking_side(label: str) -> Callable[[], dict[str, Any]]:
    runs = itertools.count()

    def run() -> dict[str, Any]:
        return {"wall_s": 1.0, "label": label, "pid": os.getpid(), "tick": next(_ticks), "own_run": next(runs)}

    return run


def broken_side() -> Callable[[], dict[str, Any]]:
    raise ValueError("no corpus here")


def hanging_side() -> Callable[[], dict[str, Any]]:
    def run() -> dict[str, Any]:
        time.sleep(60)
        return {"wall_s": 60.0}

    return run


def test_sides_of_one_framework_share_a_worker_and_alternate() -> None:
    sides = {name: (f"{HERE}:ticking_side", {"label": name}) for name in ("a", "b", "c")}
    with Pool(timeout_s=60) as pool:
        result = side_by_side(sides, 2, pool, log=lambda line: None)
        again = side_by_side({"d": (f"{HERE}:ticking_side", {"label": "d"})}, 1, pool, log=lambda line: None)
    runs = {name: side["runs"] for name, side in result.items()}
    assert len({r["pid"] for rs in runs.values() for r in rs} | {again["d"]["runs"][0]["pid"]}) == 1
    assert [r["own_run"] for r in runs["a"]] == [0, 1]  # each side keeps its own state
    order = sorted((r["tick"], name) for name, rs in runs.items() for r in rs)
    assert [name for _, name in order] == ["a", "b", "c", "c", "b", "a"]
    assert result["a"]["wall_s"]["median"] == 1.0 and result["a"]["wall_s"]["values"] == [1.0, 1.0]


def test_a_failing_or_hanging_side_is_reported_and_the_others_still_run() -> None:
    with Pool(timeout_s=3) as pool:
        broken = side_by_side({"ok": (f"{HERE}:ticking_side", {"label": "ok"}),
                               "broken": (f"{HERE}:broken_side", {})}, 2, pool, log=lambda line: None)
        hung = side_by_side({"hangs": (f"{HERE}:hanging_side", {})}, 1, pool, log=lambda line: None)
        after = side_by_side({"after": (f"{HERE}:ticking_side", {"label": "after"})}, 1, pool, log=lambda line: None)
    assert [r["label"] for r in broken["ok"]["runs"]] == ["ok", "ok"]
    assert all("ValueError: no corpus here" in r["error"] for r in broken["broken"]["runs"])
    assert broken["broken"]["wall_s"] == {}
    assert "no answer to run within 3 s" in hung["hangs"]["runs"][0]["error"]
    assert after["after"]["runs"][0]["label"] == "after"  # a fresh worker replaced the killed one
    assert after["after"]["runs"][0]["pid"] != broken["ok"]["runs"][0]["pid"]


def test_group_of_puts_each_framework_in_its_own_worker() -> None:
    assert group_of("benchmarks.langchain_bench:ingest_side") == group_of("benchmarks.determinism:langchain")
    assert group_of("benchmarks.llamaindex_bench:ingest_side") == "llamaindex"
    assert group_of("benchmarks.ingest:native_side") == group_of("benchmarks.determinism:native") == "aaflow"
