"""Callback runs for composite steps, opened and closed exactly as langchain-core does it.

A composite (sequence, parallel, assign) that aaflow runs itself must still report one chain
run per input, with its children tagged as LangChain tags them (`seq:step:N`, `map:key:K`),
so tracers and handlers see the same tree as with stock `batch`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import CallbackManager, CallbackManagerForChainRun
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import get_callback_manager_for_config


def open_chain_runs(
    runnable: Runnable[Any, Any], values: Sequence[Any], configs: Sequence[RunnableConfig]
) -> list[CallbackManagerForChainRun]:
    """Start one chain run per input (as `RunnableSequence.batch` does); pops `run_id` from each config."""
    runs = []
    for value, config in zip(values, configs, strict=True):
        manager = CallbackManager.configure(
            inheritable_callbacks=config.get("callbacks"),
            local_callbacks=None,
            verbose=False,
            inheritable_tags=config.get("tags"),
            local_tags=None,
            inheritable_metadata=config.get("metadata"),
            local_metadata=None,
        )
        runs.append(manager.on_chain_start(
            None, value, name=config.get("run_name") or runnable.get_name(), run_id=config.pop("run_id", None),
        ))
    return runs


def open_call_runs(
    runnable: Runnable[Any, Any], values: Sequence[Any], configs: Sequence[RunnableConfig]
) -> list[CallbackManagerForChainRun]:
    """Start one run per input as `Runnable._call_with_config` does (used by `assign`)."""
    return [
        get_callback_manager_for_config(config).on_chain_start(
            None, value, run_type=None, name=config.get("run_name") or runnable.get_name(),
            run_id=config.pop("run_id", None),
        )
        for value, config in zip(values, configs, strict=True)
    ]


def close_chain_runs(runs: Sequence[CallbackManagerForChainRun], outputs: Sequence[Any]) -> None:
    """End each run with its output, or with its error where the output is an exception."""
    for run, out in zip(runs, outputs, strict=True):
        if isinstance(out, Exception):
            run.on_chain_error(out)
        else:
            run.on_chain_end(out)
