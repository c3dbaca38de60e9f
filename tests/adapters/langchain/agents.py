"""Model-shaped test doubles for agents: deterministic per input, counting calls in flight."""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import tool


class Peak:
    """The most calls in flight at once, and how many calls in all (thread- and task-safe)."""

    def __init__(self) -> None:
        self.now = self.peak = self.calls = 0
        self._lock = threading.Lock()

    def __enter__(self) -> "Peak":
        with self._lock:
            self.now += 1
            self.calls += 1
            self.peak = max(self.peak, self.now)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


def _answer(messages: list[BaseMessage], tools: Sequence[str] = ("lookup",)) -> AIMessage:
    """A tool call for a new question, the final answer once the tool has replied."""
    last = messages[-1]
    if isinstance(last, ToolMessage):
        return AIMessage(content=f"answer: {last.content}")
    question = str(last.content)
    if "no tool" in question:
        return AIMessage(content=f"direct: {question}")
    return AIMessage(content="", tool_calls=[{"name": tools[0], "args": {"query": question},
                                              "id": f"call-{abs(hash(question)) % 10**8}"}])


class ToolCallingChat(BaseChatModel):
    """Calls `lookup` once, then answers from its output; async-native, `delay_s` per call."""

    delay_s: float = 0.02
    peak: Any = None

    @property
    def _llm_type(self) -> str:
        return "tool-calling-fake"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, Any]:
        return self.bind(tools=[getattr(t, "name", str(t)) for t in tools], **kwargs)

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        with self.peak or Peak():
            time.sleep(self.delay_s)
        return ChatResult(generations=[ChatGeneration(message=_answer(messages, kwargs.get("tools", ["lookup"])))])

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                         **kwargs: Any) -> ChatResult:
        with self.peak or Peak():
            await asyncio.sleep(self.delay_s)
        return ChatResult(generations=[ChatGeneration(message=_answer(messages, kwargs.get("tools", ["lookup"])))])


class SyncToolCallingChat(ToolCallingChat):
    """The same model without a native `_agenerate` (like many community and local models)."""

    _agenerate = BaseChatModel._agenerate  # type: ignore[assignment]


@tool
def lookup(query: str) -> str:
    """Look a query up in the manual."""
    return f"manual page for {query[:30]}"


def plain(messages: list[BaseMessage]) -> list[tuple[str, Any, Any]]:
    """Messages without their random ids: (type, content, tool calls)."""
    return [(m.type, m.content, [(c["name"], c["args"], c["id"]) for c in getattr(m, "tool_calls", [])])
            for m in messages]
