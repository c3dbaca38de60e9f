"""Stages: how one LCEL step runs over a micro-batch of inputs.

Every stage maps `values` (with one config per value) to outputs in the same order, where
an `Exception` instance marks that input as failed (LangChain's `return_exceptions` shape).
Leaves call the step's own `invoke`/`ainvoke`/`batch`, so each step fires its own callbacks;
composites open their runs with `runs.py` exactly as langchain-core does.
"""
from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseLanguageModel
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.runnables.base import RunnableBindingBase
from langchain_core.runnables.config import ContextThreadPoolExecutor, patch_config

from aaflow_adapters.errors import StepOutputError
from aaflow_adapters.langchain import quiet
from aaflow_adapters.langchain.remote import RemoteGate
from aaflow_adapters.langchain.runs import close_chain_runs, open_call_runs, open_chain_runs


@dataclass
class RunContext:
    """What stages share during one `batch` call: the remote budget, whether it serves `abatch`, and
    whether it serves `batch_as_completed` (stock: `invoke` per input, so steps run per input too)."""

    gate: RemoteGate
    asynchronous: bool = False
    per_input: bool = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The caller's loop under the async family (runs and cheap steps go there), else None."""
        return self.gate.loop if self.asynchronous else None


def one_per_input(outputs: Any, n: int, step: str) -> list[Any]:
    """A step's outputs, checked to be one per input (stock raises ValueError further on when not)."""
    outputs = list(outputs)
    if len(outputs) != n:
        raise StepOutputError(f"step {step}", f"its batch returned {len(outputs)} outputs for {n} inputs; "
                                              "a Runnable's batch must return one output per input, in order")
    return outputs


class Stage:
    """One step of the plan; `remote` stages wait on the network and get more workers."""

    label: str = "stage"
    remote: bool = False
    cheap: bool = False  # local and quick: runs ahead over the whole batch when errors must surface early
    workers: int = 1  # local worker threads that may run micro-batches side by side (outputs stay per row)

    def run(self, values: list[Any], configs: list[RunnableConfig], rt: RunContext) -> list[Any]:
        raise NotImplementedError


@dataclass
class InvokeStage(Stage):
    """Cheap, local steps (prompts, parsers, passthrough): `invoke` in turn, no thread pool."""

    runnable: Runnable[Any, Any]
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.label = type(self.runnable).__name__
        self.cheap = True

    def run(self, values: list[Any], configs: list[RunnableConfig], rt: RunContext) -> list[Any]:
        if rt.asynchronous:  # as stock's abatch: `ainvoke`, on the caller's loop
            return rt.gate.on_loop(self._ainvoke_all(values, configs))
        if not self.kwargs and (fn := quiet.direct(self.runnable)) is not None and quiet.unheard(configs):
            return quiet.run_each(fn, values)  # no handler would see the runs: the step's own function
        out: list[Any] = []
        for value, config in zip(values, configs, strict=True):
            try:
                out.append(self.runnable.invoke(value, config, **self.kwargs))
            except Exception as exc:  # noqa: BLE001 - per input, as in LangChain's batch
                out.append(exc)
        return out

    async def _ainvoke_all(self, values: list[Any], configs: list[RunnableConfig]) -> list[Any]:
        out: list[Any] = []
        for value, config in zip(values, configs, strict=True):
            try:
                out.append(await self.runnable.ainvoke(value, config, **self.kwargs))
            except Exception as exc:  # noqa: BLE001
                out.append(exc)
        return out


@dataclass
class GenericStage(Stage):
    """A step with a batch of its own: that `batch` (or `abatch`) per micro-batch. A user function
    (`RunnableLambda`) is local, one worker; anything else may wait on the network, so as many
    micro-batches run side by side as the budget allows."""

    runnable: Runnable[Any, Any]
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.label = type(self.runnable).__name__
        self.cheap = isinstance(self.runnable, RunnableLambda)
        self.remote = not self.cheap

    def run(self, values: list[Any], configs: list[RunnableConfig], rt: RunContext) -> list[Any]:
        runnable, kwargs = self.runnable, self.kwargs
        if not values:
            return []
        if rt.per_input:  # e.g. RunnableWithFallbacks: invoke raises the primary's error, batch the last one's
            return self._per_input(values, configs, rt)
        if self.remote:  # its own batch keeps the whole micro-batch in flight, within the budget
            configs = [{**c, "max_concurrency": min(len(values), rt.gate.in_flight)} for c in configs]
        if not rt.asynchronous:
            return one_per_input(runnable.batch(values, configs, return_exceptions=True, **kwargs),
                                 len(values), self.label)
        # for `abatch`, the step's own `abatch`, as stock runs it: async-only steps work there
        [out] = rt.gate.run([lambda: runnable.abatch(values, configs, return_exceptions=True, **kwargs)])
        return [out] * len(values) if isinstance(out, Exception) else one_per_input(out, len(values), self.label)


    def _per_input(self, values: list[Any], configs: list[RunnableConfig], rt: RunContext) -> list[Any]:
        runnable, kwargs = self.runnable, self.kwargs
        if rt.asynchronous:
            return rt.gate.run([(lambda v=v, c=c: runnable.ainvoke(v, c, **kwargs))
                                for v, c in zip(values, configs, strict=True)])

        def call(value: Any, config: RunnableConfig) -> Any:
            try:
                return runnable.invoke(value, config, **kwargs)
            except Exception as exc:  # noqa: BLE001 - per input, as in LangChain's batch_as_completed
                return exc

        with ContextThreadPoolExecutor(max_workers=len(values)) as pool:
            return list(pool.map(call, values, configs))


@dataclass
class ModelStage(Stage):
    """Completion LLMs: one `abatch` per micro-batch on the run's loop (chat models run per input)."""

    model: BaseLanguageModel[Any]
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.label = type(self.model).__name__
        self.remote = True

    def run(self, values: list[Any], configs: list[RunnableConfig], rt: RunContext) -> list[Any]:
        model, kwargs = self.model, dict(self.kwargs)
        if not values:
            return []
        [out] = rt.gate.run([lambda: model.abatch(values, configs, return_exceptions=True, **kwargs)])
        return [out] * len(values) if isinstance(out, Exception) else one_per_input(out, len(values), self.label)


@dataclass
class BindingStage(Stage):
    """`RunnableBinding`: its config merged into each input's config; its kwargs went to `inner`."""

    binding: RunnableBindingBase[Any, Any]
    inner: Stage

    def __post_init__(self) -> None:
        self.label = self.inner.label
        self.remote, self.cheap, self.workers = self.inner.remote, self.inner.cheap, self.inner.workers

    def run(self, values: list[Any], configs: list[RunnableConfig], rt: RunContext) -> list[Any]:
        return self.inner.run(values, [self.binding._merge_configs(c) for c in configs], rt)


@dataclass
class SequenceStage(Stage):
    """A nested `RunnableSequence`: steps in turn over the micro-batch; failed inputs drop out."""

    runnable: Runnable[Any, Any]
    steps: Sequence[Stage]

    def __post_init__(self) -> None:
        self.label = type(self.runnable).__name__
        self.remote = any(s.remote for s in self.steps)
        self.cheap = all(s.cheap for s in self.steps)
        self.workers = max(s.workers for s in self.steps)

    def run(self, values: list[Any], configs: list[RunnableConfig], rt: RunContext) -> list[Any]:
        runs = open_chain_runs(self.runnable, values, configs, rt.loop)
        out = list(values)
        alive = list(range(len(values)))
        for k, step in enumerate(self.steps):
            child = [patch_config(configs[i], callbacks=runs[i].get_child(f"seq:step:{k + 1}")) for i in alive]
            results = step.run([out[i] for i in alive], child, rt)
            for i, result in zip(alive, results, strict=True):
                out[i] = result
            alive = [i for i in alive if not isinstance(out[i], Exception)]
            if not alive:
                break
        close_chain_runs(runs, out, rt.loop)
        return out


def _first_error(parts: dict[str, list[Any]], i: int) -> Exception | None:
    for results in parts.values():
        if isinstance(results[i], Exception):
            return results[i]
    return None


@dataclass
class ParallelStage(Stage):
    """`RunnableParallel`: every branch over the whole micro-batch; remote branches run side by side."""

    runnable: Runnable[Any, Any]
    branches: Mapping[str, Stage]

    def __post_init__(self) -> None:
        self.label = type(self.runnable).__name__
        self.remote = any(s.remote for s in self.branches.values())
        self.cheap = all(s.cheap for s in self.branches.values())
        self.workers = max(s.workers for s in self.branches.values())

    def run(self, values: list[Any], configs: list[RunnableConfig], rt: RunContext) -> list[Any]:
        runs = open_chain_runs(self.runnable, values, configs, rt.loop)

        def branch(key: str, stage: Stage) -> list[Any]:
            child = [patch_config(c, callbacks=r.get_child(f"map:key:{key}")) for c, r in zip(configs, runs)]
            return stage.run(values, child, rt)

        parts = self._run_branches(branch)
        out: list[Any] = []
        for i in range(len(values)):
            error = _first_error(parts, i)
            out.append(error if error is not None else {key: parts[key][i] for key in self.branches})
        close_chain_runs(runs, out, rt.loop)
        return out

    def _run_branches(self, branch: Any) -> dict[str, list[Any]]:
        slow = [key for key, stage in self.branches.items() if not isinstance(stage, InvokeStage)]
        if len(slow) < 2:
            return {key: branch(key, stage) for key, stage in self.branches.items()}
        with ContextThreadPoolExecutor(max_workers=len(self.branches)) as pool:
            futures = {key: pool.submit(branch, key, stage) for key, stage in self.branches.items()}
            return {key: fut.result() for key, fut in futures.items()}


@dataclass
class AssignStage(Stage):
    """`RunnablePassthrough.assign`: the input dict updated with its mapper's outputs."""

    runnable: Runnable[Any, Any]
    mapper: Stage

    def __post_init__(self) -> None:
        self.label = type(self.runnable).__name__
        self.remote, self.cheap, self.workers = self.mapper.remote, self.mapper.cheap, self.mapper.workers

    def run(self, values: list[Any], configs: list[RunnableConfig], rt: RunContext) -> list[Any]:
        runs = open_call_runs(self.runnable, values, configs, rt.loop)
        out: list[Any] = [None] * len(values)
        ok: list[int] = []
        for i, value in enumerate(values):
            if isinstance(value, dict):
                ok.append(i)
            else:
                out[i] = ValueError("The input to RunnablePassthrough.assign() must be a dict.")
        child = [patch_config(configs[i], callbacks=runs[i].get_child()) for i in ok]
        mapped = self.mapper.run([values[i] for i in ok], child, rt)
        for i, extra in zip(ok, mapped, strict=True):
            out[i] = extra if isinstance(extra, Exception) else {**values[i], **extra}
        close_chain_runs(runs, out, rt.loop)
        return out
