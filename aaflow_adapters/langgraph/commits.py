"""Group commit: the writes of every concurrent caller made durable by one log append and one fsync.

An fsync costs milliseconds (4.5 ms measured on this machine's ext4), and 100 agents each putting a
memory would pay it 100 times in a row. Here a caller's rows wait on the store's loop while a
write is on disk; the next write takes everything that arrived meanwhile. Each caller returns
only once its rows are durable and applied, so its own next read sees them.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from aaflow_core.concurrency import LoopThread

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Runs `write(list_of_parts)` off the loop, one write at a time, each over every part pending."""

    def __init__(self, loop: LoopThread, write: Callable[[list[T]], None]) -> None:
        self._thread, self._write = loop, write
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._writing = False
        self.writes = 0  # log appends made (counted, for tests)

    async def _enqueue(self, part: T) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((part, fut))
        if not self._writing:
            self._writing = True
            asyncio.get_running_loop().create_task(self._drain())
        await fut

    async def _drain(self) -> None:
        try:
            while self._pending:
                taken, self._pending = self._pending, []
                try:
                    await asyncio.to_thread(self._write, [part for part, _ in taken])
                    self.writes += 1
                except BaseException as exc:  # noqa: BLE001 - every caller of this write gets its error
                    for _, fut in taken:
                        fut.set_exception(exc)
                    continue
                for _, fut in taken:
                    fut.set_result(None)
        finally:
            self._writing = False

    def commit(self, part: T) -> None:
        """Make `part` durable, from a thread that is not the store's loop."""
        self._thread.submit(self._enqueue(part)).result()

    async def acommit(self, part: T) -> None:
        """Make `part` durable, awaited from any event loop."""
        await asyncio.wrap_future(self._thread.submit(self._enqueue(part)))
