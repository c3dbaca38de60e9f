"""The one place that maps plan spec kinds to operator classes (plan and operators stay apart)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aaflow_core.operators import (
    ChunkOperator, EmbedOperator, GenerateOperator, LoadOperator, MapOperator, Operator, UpsertOperator,
)
from aaflow_core.plan import OpSpec, Plan, PlanError
from aaflow_core.runtime.rebatch import Rebatch

OPERATORS: dict[str, type[Operator]] = {
    cls.kind: cls for cls in (LoadOperator, ChunkOperator, EmbedOperator, UpsertOperator, MapOperator, GenerateOperator)
}


def bind_one(spec: OpSpec, plan: Plan, functions: dict[str, Callable[..., Any]], overrides: dict[str, Any]) -> Operator:
    args = spec.args
    if spec.kind == "map":
        key = args.pop("fn")
        if key not in functions:
            raise PlanError(f"map operator {spec.name!r} names function {key!r}, which was not registered")
        args["fn"] = functions[key]
    if spec.kind == "embed":
        args["threads"] = plan.resources.threads  # intra-op threads of this rank (see plan.placement)
    if spec.kind == "generate":
        args["threads"] = plan.resources.threads
    args.update(overrides.get(spec.name, {}))
    try:
        cls = OPERATORS[spec.kind]
    except KeyError:
        raise PlanError(f"unknown operator kind {spec.kind!r} (operator {spec.name!r})") from None
    return cls(spec.name, **args)


def bind(
    plan: Plan,
    functions: dict[str, Callable[..., Any]] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> list[tuple[OpSpec, Operator | Rebatch]]:
    """Instantiate the plan's stages; operators with a preferred batch size get a Rebatch before them.

    `overrides` passes run-time, non-plan arguments by operator name (e.g. the upsert's `store`).
    """
    stages: list[tuple[OpSpec, Operator | Rebatch]] = []
    for spec in plan.ops:
        if spec.batch_size:
            stages.append((spec, Rebatch(f"{spec.name}.rebatch", spec.batch_size)))
        stages.append((spec, bind_one(spec, plan, functions or {}, overrides or {})))
    return stages
