"""Prompts and parsers over a micro-batch without callback runs that nobody would see.

`prompt.invoke(x, config)` spends ~60 us per input on its callback run (configure a manager,
start a run, inspect the function's signature twice, end the run) around ~17 us of formatting;
`StrOutputParser` ~40 us around ~2 us of parsing. In a 1000-input batch that is a tenth of the
client's CPU, and the prompts run before the first request can go. When no handler would
receive any of those events (no callbacks in any input's config, no tracer, no verbose or debug
handler, no configure hook), nothing can observe the runs, so aaflow calls the very function
`invoke` runs inside its run: outputs and exceptions are the step's own. With any handler
configured every input goes through `invoke`, so the events and the run tree stay stock's.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, Generation
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import get_callback_manager_for_config


def direct(step: Runnable[Any, Any]) -> Callable[[Any], Any] | None:
    """What `step.invoke` runs inside its callback run, for the stock steps known here (else None)."""
    kind = type(step)
    if kind is ChatPromptTemplate or kind is PromptTemplate:
        return step._format_prompt_with_error_handling  # type: ignore[attr-defined]
    if kind is StrOutputParser:
        parser: StrOutputParser = step  # type: ignore[assignment]
        return lambda value: parser.parse_result(
            [ChatGeneration(message=value)] if isinstance(value, BaseMessage) else [Generation(text=value)])
    return None


def _silent(callbacks: Any) -> bool:
    if callbacks is None or (isinstance(callbacks, list) and not callbacks):
        return True
    return isinstance(callbacks, BaseCallbackManager) and not callbacks.handlers and not callbacks.inheritable_handlers


def unheard(configs: Sequence[RunnableConfig]) -> bool:
    """True when no handler would receive an event from these inputs' runs: every config's callbacks
    are empty, and the manager LangChain would configure (tracers, verbose/debug handlers and
    configure hooks come from the environment and the context, the same for every input) has none."""
    if not configs or any(c.get("run_id") is not None or not _silent(c.get("callbacks")) for c in configs):
        return False
    manager = get_callback_manager_for_config(configs[0])
    return not manager.handlers and not manager.inheritable_handlers


def run_each(fn: Callable[[Any], Any], values: Sequence[Any]) -> list[Any]:
    """`fn` per value; an exception becomes that input's result (LangChain's `return_exceptions` shape)."""
    out: list[Any] = []
    for value in values:
        try:
            out.append(fn(value))
        except Exception as exc:  # noqa: BLE001 - per input, as in LangChain's batch
            out.append(exc)
    return out
