"""LCEL -> stages: walk the user's object tree (never `get_graph()`, which is for display only)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langchain_core.output_parsers import BaseOutputParser
from langchain_core.prompts import BasePromptTemplate
from langchain_core.runnables import (
    Runnable, RunnableBinding, RunnableLambda, RunnableParallel, RunnablePassthrough, RunnablePick, RunnableSequence,
)
from langchain_core.runnables.passthrough import RunnableAssign

from aaflow_adapters.langchain.graphs import PerInputStage, per_input_mode
from aaflow_adapters.langchain.retrieval import RetrieverStage, batchable
from aaflow_adapters.langchain.stages import (
    AssignStage, BindingStage, GenericStage, InvokeStage, ModelStage, ParallelStage, SequenceStage, Stage,
)

_CHEAP = (BasePromptTemplate, BaseOutputParser, RunnablePick)


def translate(runnable: Runnable[Any, Any], kwargs: Mapping[str, Any] | None = None) -> Stage:
    """The stage for one runnable; `kwargs` are call kwargs, which LangChain hands to the first step."""
    kwargs = dict(kwargs or {})
    if type(runnable) is RunnableBinding:  # subclasses (retry, each, ...) keep their own batch
        return BindingStage(runnable, translate(runnable.bound, {**runnable.kwargs, **kwargs}))
    if isinstance(runnable, RunnableSequence):
        steps = [translate(step, kwargs if i == 0 else None) for i, step in enumerate(runnable.steps)]
        return SequenceStage(runnable, steps)
    if isinstance(runnable, RunnableParallel):
        return ParallelStage(runnable, {key: translate(step) for key, step in runnable.steps__.items()})
    if isinstance(runnable, RunnableAssign) and not kwargs:
        return AssignStage(runnable, translate(runnable.mapper))
    if isinstance(runnable, BaseLanguageModel) and not isinstance(runnable, BaseChatModel):
        return ModelStage(runnable, kwargs)
    if batchable(runnable) and not kwargs:
        return RetrieverStage(runnable)  # type: ignore[arg-type]
    if isinstance(runnable, _CHEAP) or _plain_passthrough(runnable):
        return InvokeStage(runnable, kwargs)
    if not isinstance(runnable, RunnableLambda) and (mode := per_input_mode(runnable)) is not None:
        return PerInputStage(runnable, mode, kwargs)
    return GenericStage(runnable, kwargs)


def top_level_steps(runnable: Runnable[Any, Any], kwargs: Mapping[str, Any]) -> tuple[list[Stage], bool]:
    """The stages the executor streams: a sequence's steps, or the whole runnable as one stage."""
    if isinstance(runnable, RunnableSequence):
        return [translate(step, kwargs if i == 0 else None) for i, step in enumerate(runnable.steps)], True
    return [translate(runnable, kwargs)], False


def _plain_passthrough(runnable: Runnable[Any, Any]) -> bool:
    return type(runnable) is RunnablePassthrough and runnable.func is None and runnable.afunc is None
