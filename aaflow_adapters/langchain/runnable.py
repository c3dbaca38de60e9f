"""AAFlowRunnable: `chain = AAFlowRunnable(chain)` and the batch family runs on aaflow.

A `RunnableBindingBase` subclass, so `with_config`, `bind`, `with_retry` and `|` wrap it and
still route `batch` here. `invoke`, `stream`, `astream` and events are delegated to the wrapped
chain untouched (one input gains nothing from batching); `batch`, `abatch`,
`batch_as_completed` and `abatch_as_completed` stream micro-batches through the translated
plan, with LangChain's callback runs, `return_exceptions` semantics and input order.
Under `mpiexec` (`ranks="auto"`) each rank runs its contiguous shard of a batch and every rank
gets all outputs, in input order (see `mpi.py` and docs/distributed.md).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Optional, Union

from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.base import RunnableBindingBase
from langchain_core.runnables.config import get_config_list, patch_config, run_in_executor
from pydantic import PrivateAttr

from aaflow_core import ConfigError, Plan
from aaflow_core.distributed import Comm
from aaflow_core.remote import BatchLimits
from aaflow_adapters.errors import UnknownOptionError
from aaflow_adapters.langchain.batch_api import BatchRunUsage, batch_api_run
from aaflow_adapters.langchain.checkpoint import checkpoint_dir, checkpointed, checkpointed_batch
from aaflow_adapters.langchain.checks import as_runnable
from aaflow_adapters.langchain.graphs import PerInputStage, each_async, each_sync
from aaflow_adapters.langchain.mpi import batch_on_ranks
from aaflow_adapters.langchain.pipeline import Options, describe, stream_rows
from aaflow_adapters.langchain.runs import close_chain_runs, fail_runs, open_chain_runs
from aaflow_adapters.langchain.stages import Stage
from aaflow_adapters.langchain.translate import top_level_steps

_END = object()
_UNSET = object()


class AAFlowRunnable(RunnableBindingBase[Any, Any]):
    """Runs any LangChain runnable's batch calls on aaflow, with the same outputs."""

    batch_size: int = 16
    """Inputs per micro-batch: the unit that moves between steps and is embedded/searched together."""
    max_concurrency: int = 128
    """Remote calls in flight across the whole chain (a config's `max_concurrency` overrides it)."""
    ranks: int | Literal["auto"] = "auto"
    """MPI ranks a batch is spread over: "auto" = every rank of the job when started by mpiexec,
    else 1; 1 = this process runs the whole batch; N = the job must have N ranks."""
    deterministic: bool = True
    """Same inputs + same resources => same outputs: micro-batches are cut by input order, and user
    functions run on one worker per step (False: one per core, so their call order may vary)."""
    remote: Literal["direct", "batch-api"] = "direct"
    """How routed ChatOpenAI calls are sent: "direct" (now, within the budget) or "batch-api" (one
    OpenAI Batch API job per model step, half price, answers within the completion window; see
    batch_api.py). Outputs are the same for the same model answers."""
    batch_dir: str | None = None
    """With remote="batch-api": a folder where the jobs' file/batch ids and results are kept, so a
    call repeated after a crash resumes the same batches instead of paying again."""
    batch_limits: BatchLimits = BatchLimits()
    """With remote="batch-api": requests and bytes per file, completion window, polling pace."""
    batch_max_wait_s: float = 2.0
    """With remote="batch-api": send the held requests after this long with no new one, even if some
    inputs are still busy elsewhere (a slow local step)."""
    batch_progress: bool = False
    """With remote="batch-api": a progress bar per job while it is polled."""
    _batch_usage: BatchRunUsage | None = PrivateAttr(default=None)

    @property
    def last_batch_usage(self) -> BatchRunUsage | None:
        """What the last remote="batch-api" call sent as batch lines vs synchronous requests."""
        return self._batch_usage
    checkpoint: Optional[Union[str, Path]] = None
    """A directory: `batch` commits each finished output there and, called again after a crash, runs
    only the unfinished inputs (see checkpoint.py; per call: configurable "aaflow_checkpoint")."""
    progress: bool = False
    """A tqdm bar over a checkpointed batch, counting resumed inputs separately."""

    def __init__(self, runnable: Any = _UNSET, /, **kwargs: Any) -> None:
        """`runnable` (or `bound=`): a Runnable, or a callable or dict that LCEL coerces to one."""
        if runnable is not _UNSET:
            kwargs["bound"] = runnable
        accepted = sorted(type(self).model_fields)
        for name in kwargs:
            if name not in accepted:  # pydantic would drop it silently: a misspelt option must not pass
                raise UnknownOptionError("AAFlowRunnable", name, kwargs[name], accepted)
        kwargs["bound"] = as_runnable(kwargs.get("bound"))
        super().__init__(**kwargs)
        self._check()

    def _check(self) -> None:
        """Validated once, at the edge, with aaflow's ConfigError naming the field."""
        if self.batch_size < 1:
            raise ConfigError("batch_size", self.batch_size, "must be >= 1")
        if self.max_concurrency < 1:
            raise ConfigError("max_concurrency", self.max_concurrency, "must be >= 1")
        Comm.for_ranks(self.ranks)  # a bad value, or N ranks asked outside an N-rank job

    def _prepare(self, n: int, config: RunnableConfig | Sequence[RunnableConfig] | None,
                 kwargs: Mapping[str, Any]) -> tuple[Runnable[Any, Any], list[RunnableConfig], dict[str, Any]]:
        """Configs per input with this wrapper's and any inner bindings' config merged in."""
        configs = [self._merge_configs(c) for c in get_config_list(config, n)]  # type: ignore[arg-type]
        merged = {**self.kwargs, **kwargs}
        root = self.bound
        while type(root) is RunnableBinding:
            configs = [root._merge_configs(c) for c in configs]
            merged = {**root.kwargs, **merged}
            root = root.bound
        return root, configs, merged

    def _options(self, configs: list[RunnableConfig]) -> Options:
        limit = configs[0].get("max_concurrency") if configs else None
        return Options(self.batch_size, limit or self.max_concurrency, self.deterministic)

    def plan(self, config: RunnableConfig | None = None) -> Plan:
        """The aaflow plan `batch` runs for this chain (printable; fingerprint it with aaflow_core.plan)."""
        root, configs, kwargs = self._prepare(1, config, {})
        stages, _ = top_level_steps(root, kwargs)
        return describe(stages, self._options(configs))

    def _steps(self, inputs: Sequence[Any], config: RunnableConfig | Sequence[RunnableConfig] | None,
               kwargs: Mapping[str, Any]) -> tuple[Runnable[Any, Any], list[RunnableConfig], list[Stage], bool]:
        root, configs, merged = self._prepare(len(inputs), config, kwargs)
        stages, is_sequence = top_level_steps(root, merged)
        return root, configs, stages, is_sequence

    def _run(self, inputs: Sequence[Any], config: RunnableConfig | Sequence[RunnableConfig] | None,
             return_exceptions: bool, kwargs: Mapping[str, Any],
             loop: asyncio.AbstractEventLoop | None = None, per_input: bool = False) -> Iterator[tuple[int, Any]]:
        """(index, output) as inputs finish; root runs are closed once all are done, as stock does.

        `loop`: the caller's event loop under the async family; slow calls run there and steps
        aaflow has no plan for run through their own `abatch` (as stock's `abatch` does). `per_input`:
        called for `batch_as_completed`, which stock runs as `invoke` per input, so steps aaflow has
        no plan for run per input too (a RunnableWithFallbacks then fails with the primary's error)."""
        root, configs, stages, is_sequence = self._steps(inputs, config, kwargs)
        opts = self._options(configs)
        if not is_sequence and isinstance(stages[0], PerInputStage):  # a graph, agent, model, wrapper
            for i, out in each_sync(stages[0], inputs, configs, opts.in_flight, fail_fast=not return_exceptions,
                                    loop=loop):
                if isinstance(out, Exception) and not return_exceptions:
                    raise out
                yield i, out
            return
        runs = open_chain_runs(root, inputs, configs, loop) if is_sequence else None

        def config_for(row: int, k: int) -> RunnableConfig:
            if runs is None:
                return configs[row]
            return patch_config(configs[row], callbacks=runs[row].get_child(f"seq:step:{k + 1}"))

        outputs: list[Any] = list(inputs)
        try:
            for i, out in stream_rows(stages, list(inputs), config_for, opts, fail_fast=not return_exceptions,
                                      loop=loop, per_input=per_input):
                if isinstance(out, Exception) and not return_exceptions:
                    raise out
                outputs[i] = out
                yield i, out
        except BaseException as exc:
            if runs is not None:
                fail_runs(runs, exc, loop)
            raise
        if runs is not None:
            close_chain_runs(runs, outputs, loop)

    async def _arun(self, inputs: Sequence[Any], config: RunnableConfig | Sequence[RunnableConfig] | None,
                    return_exceptions: bool, kwargs: Mapping[str, Any],
                    per_input: bool = False) -> AsyncIterator[tuple[int, Any]]:
        """The async family: a lone graph/model/wrapper runs natively on this loop; a chain runs
        on aaflow's executor threads with its slow calls sent to this loop."""
        loop = asyncio.get_running_loop()
        _, configs, stages, is_sequence = self._steps(inputs, config, kwargs)
        if not is_sequence and isinstance(stages[0], PerInputStage):
            async for i, out in each_async(stages[0], inputs, configs, self._options(configs).in_flight,
                                           fail_fast=not return_exceptions):
                if isinstance(out, Exception) and not return_exceptions:
                    raise out
                yield i, out
            return
        results = self._run(inputs, config, return_exceptions, kwargs, loop, per_input)
        try:
            while (item := await run_in_executor(None, next, results, _END)) is not _END:
                yield item
        finally:
            await run_in_executor(None, results.close)

    def batch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None, *,
              return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        return self._batch(inputs, config, return_exceptions, kwargs)

    def _batch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None,
               return_exceptions: bool, kwargs: Mapping[str, Any],
               loop: asyncio.AbstractEventLoop | None = None) -> list[Any]:
        if not inputs:
            return []
        comm = Comm.for_ranks(self.ranks)
        if comm.size > 1:  # collective: each rank runs its shard; callbacks fire on that rank
            return batch_on_ranks(comm, inputs, get_config_list(config, len(inputs)),
                                  lambda xs, cs: self._batch_here(xs, cs, return_exceptions, kwargs, loop))
        return self._batch_here(inputs, config, return_exceptions, kwargs, loop)

    def _batch_api(self, inputs: list[Any], config: RunnableConfig | Sequence[RunnableConfig] | None,
                   return_exceptions: bool, kwargs: Mapping[str, Any]) -> list[Any]:
        root, configs, _ = self._prepare(len(inputs), config, kwargs)
        outputs, self._batch_usage = batch_api_run(
            root, inputs, configs, return_exceptions=return_exceptions, limits=self.batch_limits,
            ledger=self.batch_dir, progress=self.batch_progress, max_wait_s=self.batch_max_wait_s)
        return outputs

    def _batch_here(self, inputs: list[Any], config: RunnableConfig | Sequence[RunnableConfig] | None,
                    return_exceptions: bool, kwargs: Mapping[str, Any],
                    loop: asyncio.AbstractEventLoop | None) -> list[Any]:
        work = checkpoint_dir(self.checkpoint, get_config_list(config, len(inputs)), Comm.for_ranks(self.ranks))
        if work is not None:
            def run_missing(xs: list[Any], cs: Sequence[RunnableConfig]) -> Iterator[tuple[int, Any]]:
                if self.remote == "batch-api":
                    return enumerate(self._batch_api(xs, cs, True, kwargs))
                return self._run(xs, cs, True, kwargs, loop)

            return checkpointed_batch(self, work, inputs, config, kwargs, return_exceptions=return_exceptions,
                                      progress=self.progress, run_missing=run_missing)
        if self.remote == "batch-api":
            return self._batch_api(inputs, config, return_exceptions, kwargs)
        outputs: list[Any] = [None] * len(inputs)
        for i, out in self._run(inputs, config, return_exceptions, kwargs, loop):
            outputs[i] = out
        return outputs

    async def abatch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None, *,
                     return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        if not inputs:
            return []
        checkpointing = checkpoint_dir(self.checkpoint, get_config_list(config, len(inputs)), Comm()) is not None
        if Comm.for_ranks(self.ranks).size > 1 or checkpointing or self.remote == "batch-api":
            return await run_in_executor(None, self._batch, inputs, config, return_exceptions, kwargs,
                                         asyncio.get_running_loop())
        outputs: list[Any] = [None] * len(inputs)
        async for i, out in self._arun(inputs, config, return_exceptions, kwargs):
            outputs[i] = out
        return outputs

    def batch_as_completed(self, inputs: Sequence[Any], config: RunnableConfig | Sequence[RunnableConfig] | None = None,
                           *, return_exceptions: bool = False, **kwargs: Any) -> Iterator[tuple[int, Any]]:
        if not inputs:
            return
        if Comm.for_ranks(self.ranks).size > 1:  # outputs arrive together, after the exchange
            yield from enumerate(self.batch(list(inputs), config, return_exceptions=return_exceptions, **kwargs))
            return
        if (work := checkpoint_dir(self.checkpoint, get_config_list(config, len(inputs)), Comm())) is not None:
            yield from checkpointed(self, work, inputs, config, kwargs, return_exceptions=return_exceptions,
                                    progress=self.progress,
                                    run_missing=lambda xs, cs: self._run(xs, cs, True, kwargs, per_input=True))
            return
        yield from self._run(inputs, config, return_exceptions, kwargs, per_input=True)

    async def abatch_as_completed(
        self, inputs: Sequence[Any], config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *, return_exceptions: bool = False, **kwargs: Any,
    ) -> AsyncIterator[tuple[int, Any]]:
        if not inputs:
            return
        if Comm.for_ranks(self.ranks).size > 1:
            outputs = await self.abatch(list(inputs), config, return_exceptions=return_exceptions, **kwargs)
            for item in enumerate(outputs):
                yield item
            return
        async for item in self._arun(inputs, config, return_exceptions, kwargs, per_input=True):
            yield item
