"""Embedding modes (precision x backend): validation, CPU feature detection, fallback, tolerances.

Plain data and no torch import, so the plan layer can validate a mode without loading a model.
fp32 on torch is the reference every other mode is measured against.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

from aaflow_core.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "int8")
ENGINES = ("torch", "onnx", "openvino")  # what `--backend` (the embedding engine) names
AUTO = "auto"  # precision and backend both: measured once per machine (models/auto.py)
# CPU flags (as /proc/cpuinfo spells them) that give native bf16 matrix math, best first.
BF16_ISAS = ("amx_bf16", "avx512_bf16")


class PrecisionFallbackWarning(UserWarning):
    """A requested precision is not supported natively by this CPU; fp32 is used instead."""


@dataclass(frozen=True)
class EmbedMode:
    precision: str = "fp32"
    backend: str = "torch"

    @property
    def label(self) -> str:
        return f"{self.backend}-{self.precision}"


@dataclass(frozen=True)
class Tolerance:
    """Documented bound of a mode against torch-fp32 on the same texts and batches."""

    max_abs: float
    min_cosine: float

    def admits(self, figures: dict[str, float]) -> bool:
        """Whether `compare()` figures are within the bound; identical vectors always are.

        The cosine of identical rows can round below 1.0, so it is only consulted when the
        vectors differ at all (torch-fp32's bound is exact equality: max_abs 0).
        """
        if figures["max_abs_diff"] == 0.0:
            return True
        return figures["max_abs_diff"] <= self.max_abs and figures["min_cosine"] >= self.min_cosine


# Measured on 1000-char pydoc chunks (benchmarks/embed_modes.py and several small text sets), with
# headroom: int8's worst row varies with the texts (min cosine 0.97-0.99 onnx, 0.89-0.95 torch).
TOLERANCES: dict[str, Tolerance] = {
    "torch-fp32": Tolerance(0.0, 1.0),
    "onnx-fp32": Tolerance(1e-5, 0.99999),
    "openvino-fp32": Tolerance(1e-5, 0.99999),
    "torch-bf16": Tolerance(1e-2, 0.999),
    "onnx-int8": Tolerance(0.1, 0.95),
    "torch-int8": Tolerance(0.15, 0.85),
}


def check_mode(precision: str, backend: str) -> EmbedMode:
    """Validate a requested mode at the edge (plan construction, CLI, adapters)."""
    if precision not in PRECISIONS:
        raise ConfigError("precision", precision, f"must be one of {', '.join(PRECISIONS)}")
    if backend not in ENGINES:
        raise ConfigError("backend", backend, f"must be one of {', '.join(ENGINES)}")
    if backend == "onnx" and precision == "bf16":
        raise ConfigError("precision", precision, "bf16 runs on the torch backend only (ONNX Runtime CPU has no bf16 kernels)")
    if backend == "openvino" and precision != "fp32":
        raise ConfigError("precision", precision, "the openvino backend runs fp32 only (exact: within 1e-5 of torch)")
    return EmbedMode(precision, backend)


def check_request(precision: str, backend: str) -> tuple[str, str]:
    """Validate at the edge what a user may ask for: a mode, or `auto` for both (chosen per machine)."""
    if AUTO in (precision, backend):
        if (precision, backend) != (AUTO, AUTO):
            raise ConfigError("precision" if precision != AUTO else "backend", precision if precision != AUTO else backend,
                              "auto picks precision and backend together: ask for auto in both (--precision auto --backend auto)")
        return precision, backend
    check_mode(precision, backend)
    return precision, backend


def bf16_isa(features: frozenset[str]) -> str | None:
    """The CPU instruction set that makes bf16 fast here, or None (bf16 would be emulated, slower than fp32)."""
    return next((isa for isa in BF16_ISAS if isa in features), None)


@dataclass(frozen=True)
class ResolvedMode:
    """What was asked for, what runs, and why they differ (recorded in the manifest)."""

    requested: EmbedMode
    effective: EmbedMode
    isa: str | None
    fallback: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"requested": asdict(self.requested), "effective": asdict(self.effective),
                "label": self.effective.label, "isa": self.isa, "fallback": self.fallback}


def resolve_mode(precision: str, backend: str, features: frozenset[str]) -> ResolvedMode:
    """Pick the mode that runs on a CPU with `features`; bf16 without native support falls back to fp32.

    `features` is passed in (not read here) so the fallback path can be tested on any machine.
    """
    requested = check_mode(precision, backend)
    if precision != "bf16":
        return ResolvedMode(requested, requested, None, None)
    isa = bf16_isa(features)
    if isa is not None:
        return ResolvedMode(requested, requested, isa, None)
    why = f"CPU has none of {', '.join(BF16_ISAS)}; bf16 would be emulated, so fp32 is used"
    resolved = ResolvedMode(requested, EmbedMode("fp32", backend), None, why)
    warn_fallback(resolved, stacklevel=3)
    return resolved


def warn_fallback(mode: ResolvedMode, stacklevel: int = 2) -> None:
    """Tell the caller that the mode asked for is not the one running (no-op when they agree)."""
    if mode.fallback is not None:
        warnings.warn(f"embedding precision {mode.requested.precision} unavailable: {mode.fallback}",
                      PrecisionFallbackWarning, stacklevel=stacklevel)
