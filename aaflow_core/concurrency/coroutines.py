"""Run a coroutine that never suspends to its end on the calling thread, without an event loop.

A step written once as a coroutine serves both flavours of a run: awaited under the async one,
driven here under the sync one, where everything it awaits completes at once.
"""
from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """The coroutine's result; RuntimeError if it suspends (it awaited something that waits)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("aaflow: a step of a synchronous run suspended; its sync flavour must never wait")
