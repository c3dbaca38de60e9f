"""Numbers the report's parts share (formatting, per-phase medians, every speedup): a leaf that imports no
other benchmark module, so render -> {tables, notes} -> figures points one way."""
from __future__ import annotations

import statistics
from typing import Any


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return "-" if v is None else str(v)


def phase_medians(side: dict[str, Any]) -> dict[str, float]:
    runs = [r for r in side["runs"] if "phases_s" in r]
    keys = {k for r in runs for k in r["phases_s"]}
    return {k: statistics.median(r["phases_s"].get(k, 0.0) for r in runs) for k in keys}


def all_speedups(cases: dict[str, Any]) -> list[tuple[str, str, float]]:
    out = []
    for name, case in cases.items():
        for sub in (case, case.get("echo", {}), case.get("local_llm", {})):
            for label, v in (sub.get("speedups") or {}).items():
                if v is not None:
                    where = name if sub is case else f"{name} ({'EchoChat' if sub is case.get('echo') else 'local LLM'})"
                    out.append((where, label, v))
        for n, per in (case.get("per_ranks") or {}).items():
            if n != "1" and per.get("speedup_wall_s"):
                out.append((name, f"{n} ranks vs 1 rank (wall)", per["speedup_wall_s"]))
    return out
