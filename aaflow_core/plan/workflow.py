"""The Workflow builder and the pure rewrites that turn what the user asked into a runnable plan."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aaflow_core.plan.fingerprint import fingerprint
from aaflow_core.plan.data import OpSpec, Plan, PlanError, Resources
from aaflow_core.plan import specs


class Workflow:
    """A DAG of operator specs (edges point to inputs). `compile()` validates and rewrites it."""

    def __init__(self, resources: Resources | None = None) -> None:
        self.resources = resources or Resources()
        self._ops: list[OpSpec] = []
        self.functions: dict[str, Callable[..., Any]] = {}

    def add(self, spec: OpSpec, *, after: str | None = None) -> "Workflow":
        """Append an operator; by default its input is the previously added operator."""
        if any(op.name == spec.name for op in self._ops):
            raise PlanError(f"duplicate operator name {spec.name!r}")
        upstream = after if after is not None else (self._ops[-1].name if self._ops else None)
        if upstream is not None and not any(op.name == upstream for op in self._ops):
            raise PlanError(f"operator {spec.name!r} reads from unknown operator {upstream!r}")
        self._ops.append(replace(spec, inputs=(upstream,) if upstream else ()))
        return self

    def map(self, fn: Callable[..., Any], *, name: str = "map", batch_size: int | None = None, workers: int = 1) -> "Workflow":
        """Add a user function over record batches; it is named in the plan by its qualified name."""
        key = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', type(fn).__name__)}#{name}"
        self.functions[key] = fn
        return self.add(specs.map_batches(key, name=name, batch_size=batch_size, workers=workers))

    def compile(self) -> Plan:
        """Validate the graph, then apply the rewrites. Pure: the Workflow is not modified."""
        plan = Plan(ops=tuple(self._ops), resources=self.resources)
        for rewrite in REWRITES:
            plan = rewrite(plan)
        return plan


def check_chain(plan: Plan) -> Plan:
    """The executors run linear chains: each operator reads the one before it."""
    if not plan.ops:
        raise PlanError("empty workflow: add at least one operator")
    for prev, op in zip((None, *plan.ops), plan.ops):
        expected = (prev.name,) if prev else ()
        if op.inputs != expected:
            raise PlanError(f"operator {op.name!r} reads {op.inputs}; only linear chains are supported")
    return plan


def scale_workers(plan: Plan) -> Plan:
    """No operator gets more worker threads than the declared thread budget."""
    ops = tuple(replace(op, workers=min(op.workers, plan.resources.threads)) for op in plan.ops)
    return replace(plan, ops=ops)


REWRITES: tuple[Callable[[Plan], Plan], ...] = (check_chain, scale_workers)


def plan_fingerprint(plan: Plan) -> str:
    return fingerprint(plan.to_json())
