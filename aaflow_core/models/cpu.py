"""What this CPU can do, read at run time, so modes pick kernels the machine really has.

`AAFLOW_CPU_FEATURES` (space- or comma-separated flags) replaces the detected set: it lets a
fallback path (an AVX2-only machine, say) be exercised on any machine, and is named in every
summary so a log never hides that the features were simulated.
"""
from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path

FEATURES_ENV = "AAFLOW_CPU_FEATURES"
# The flags that decide aaflow's choices (bf16/int8 kernels) or explain a speed, in the order printed.
NOTABLE = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")


def _cpuinfo_field(text: str, name: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(name):
            return line.split(":", 1)[1].strip()
    return None


@lru_cache(maxsize=1)
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def detected_features() -> frozenset[str]:
    """The flags /proc/cpuinfo reports (Linux); empty where unknown."""
    flags = _cpuinfo_field(_cpuinfo(), "flags")
    return frozenset(flags.split()) if flags else frozenset()


def cpu_features() -> frozenset[str]:
    """The flags aaflow acts on: detected ones, or `AAFLOW_CPU_FEATURES` when set."""
    override = os.environ.get(FEATURES_ENV)
    if override is not None:
        return frozenset(override.replace(",", " ").split())
    return detected_features()


def cpu_model() -> str:
    """The CPU's marketing name, e.g. 'AMD EPYC 7B13' (platform.processor() where /proc has none)."""
    return _cpuinfo_field(_cpuinfo(), "model name") or platform.processor() or "unknown CPU"


def cpu_summary() -> dict[str, object]:
    """CPU model, core count and the notable features aaflow sees (for logs and manifests)."""
    features = cpu_features()
    return {"model": cpu_model(), "cores": os.cpu_count(), "features": [f for f in NOTABLE if f in features],
            "simulated": FEATURES_ENV in os.environ}


def cpu_line() -> str:
    """One line for the start of a test run or a benchmark: which machine this ran on."""
    s = cpu_summary()
    feats = " ".join(s["features"]) or "none of " + " ".join(NOTABLE)  # type: ignore[arg-type]
    sim = f" (simulated by {FEATURES_ENV})" if s["simulated"] else ""
    return f"CPU: {s['model']}, {s['cores']} cores; features aaflow uses: {feats}{sim}"
