"""Frozen plan data (OpSpec, Plan, Resources): printed, hashed and diffed without importing torch or faiss.

The constructors of the built-in specs are in `specs.py`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from aaflow_core.errors import AAFlowError, ConfigError


class PlanError(AAFlowError):
    """A workflow cannot be compiled into a plan (unknown input, cycle, bad parameter)."""


def _canonical(value: Any) -> Any:
    """Parameters must be JSON data; tuples become lists, dict keys sorted by json.dumps."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    raise PlanError(f"plan parameter {value!r} is not plain data (str/int/float/bool/None/list/dict)")


@dataclass(frozen=True)
class Resources:
    """Declared resources. Outputs depend on these and the input only, never on timing."""

    threads: int = 1
    ranks: int = 1
    queue_capacity: int = 4

    def __post_init__(self) -> None:
        for name in ("threads", "ranks", "queue_capacity"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(name, value, "must be an integer >= 1")


@dataclass(frozen=True)
class OpSpec:
    """One operator: its kind, JSON parameters, input edge, preferred batch rows and worker count."""

    name: str
    kind: str
    params: str = "{}"  # canonical JSON, so the spec stays hashable and immutable
    inputs: tuple[str, ...] = ()
    batch_size: int | None = None
    workers: int = 1

    @staticmethod
    def make(kind: str, name: str | None = None, *, batch_size: int | None = None, workers: int = 1, **params: Any) -> "OpSpec":
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"{kind}.batch_size", batch_size, "must be >= 1")
        if workers < 1:
            raise ConfigError(f"{kind}.workers", workers, "must be >= 1")
        text = json.dumps(_canonical(params), sort_keys=True, separators=(",", ":"))
        return OpSpec(name=name or kind, kind=kind, params=text, batch_size=batch_size, workers=workers)

    @property
    def args(self) -> dict[str, Any]:
        return json.loads(self.params)


@dataclass(frozen=True)
class Plan:
    """A compiled, validated chain of operator specs plus the resources it runs with."""

    ops: tuple[OpSpec, ...]
    resources: Resources = field(default_factory=Resources)

    def to_json(self) -> str:
        body = {"ops": [asdict(op) for op in self.ops], "resources": asdict(self.resources)}
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    def op(self, name: str) -> OpSpec:
        for op in self.ops:
            if op.name == name:
                return op
        raise PlanError(f"no operator named {name!r} in plan")

    def __str__(self) -> str:
        lines = [f"Plan(threads={self.resources.threads}, ranks={self.resources.ranks})"]
        for op in self.ops:
            extra = f" batch={op.batch_size}" if op.batch_size else ""
            lines.append(f"  {op.name}: {op.kind}{extra} workers={op.workers} {op.params} <- {', '.join(op.inputs) or 'source'}")
        return "\n".join(lines)
