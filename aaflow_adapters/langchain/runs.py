"""Callback runs for composite steps, opened and closed exactly as langchain-core does it.

A composite (sequence, parallel, assign) that aaflow runs itself must still report one chain
run per input, with its children tagged as LangChain tags them (`seq:step:N`, `map:key:K`),
so tracers and handlers see the same tree as with stock `batch`. Under the async family
(`loop` given: the caller's event loop) the runs are opened and closed there with LangChain's
async callback manager, as stock's `abatch` does, so async handlers run on the caller's loop.
"""
from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManager, CallbackManager
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import get_async_callback_manager_for_config, get_callback_manager_for_config

Loop = asyncio.AbstractEventLoop | None


def _on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


def _configure(manager: type[CallbackManager] | type[AsyncCallbackManager], config: RunnableConfig) -> Any:
    return manager.configure(
        inheritable_callbacks=config.get("callbacks"), local_callbacks=None, verbose=False,
        inheritable_tags=config.get("tags"), local_tags=None,
        inheritable_metadata=config.get("metadata"), local_metadata=None,
    )


def open_chain_runs(runnable: Runnable[Any, Any], values: Sequence[Any], configs: Sequence[RunnableConfig],
                    loop: Loop = None) -> list[Any]:
    """Start one chain run per input (as `RunnableSequence.batch` does); pops `run_id` from each config."""
    names = [config.get("run_name") or runnable.get_name() for config in configs]
    if loop is not None:
        async def start() -> list[Any]:
            return [await _configure(AsyncCallbackManager, c).on_chain_start(None, v, name=n, run_id=c.pop("run_id", None))
                    for v, c, n in zip(values, configs, names, strict=True)]

        return _on(loop, start())
    return [_configure(CallbackManager, c).on_chain_start(None, v, name=n, run_id=c.pop("run_id", None))
            for v, c, n in zip(values, configs, names, strict=True)]


def open_call_runs(runnable: Runnable[Any, Any], values: Sequence[Any], configs: Sequence[RunnableConfig],
                   loop: Loop = None) -> list[Any]:
    """Start one run per input as `Runnable._call_with_config` does (used by `assign`)."""
    names = [config.get("run_name") or runnable.get_name() for config in configs]
    if loop is not None:
        async def start() -> list[Any]:
            return [await get_async_callback_manager_for_config(c).on_chain_start(
                None, v, run_type=None, name=n, run_id=c.pop("run_id", None))
                for v, c, n in zip(values, configs, names, strict=True)]

        return _on(loop, start())
    return [get_callback_manager_for_config(c).on_chain_start(None, v, run_type=None, name=n,
                                                               run_id=c.pop("run_id", None))
            for v, c, n in zip(values, configs, names, strict=True)]


def close_chain_runs(runs: Sequence[Any], outputs: Sequence[Any], loop: Loop = None) -> None:
    """End each run with its output, or with its error where the output is an exception."""
    if loop is not None:
        async def close() -> None:
            for run, out in zip(runs, outputs, strict=True):
                await (run.on_chain_error(out) if isinstance(out, Exception) else run.on_chain_end(out))

        _on(loop, close())
        return
    for run, out in zip(runs, outputs, strict=True):
        if isinstance(out, Exception):
            run.on_chain_error(out)
        else:
            run.on_chain_end(out)


def fail_runs(runs: Sequence[Any], error: BaseException, loop: Loop = None) -> None:
    """End every run with the batch's error (stock: the first failure aborts the whole batch)."""
    if loop is None:
        for run in runs:
            run.on_chain_error(error)
        return

    async def fail() -> None:
        for run in runs:
            await run.on_chain_error(error)

    _on(loop, fail())
