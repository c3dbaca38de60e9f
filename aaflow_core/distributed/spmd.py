"""The SPMD driver: what every distributed step needs from its engine, and the two shapes those steps take.

Every rank runs the same program. A step that can fail on some ranks must still reach one
collective check on every rank, or the others wait forever: `collective()` is that check
(agree-on-error: any rank's exception ends the step with the same `RankError` on every rank).
`run_sharded` is the commonest step: each rank works on its contiguous shard of the items,
then all agree. Callers type against `Engine`; `Comm` (MPI, or a size-1 job) is one engine, and
another (a thread pool, Ray, ...) implements the same methods, inheriting `Driver` for the two
steps, without touching a caller.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, TypeVar

import numpy as np
import pyarrow as pa

T = TypeVar("T")


class Engine(Protocol):
    """One rank's view of an SPMD job: who it is, what it owns, the collective check, Arrow exchange."""

    rank: int
    size: int

    @property
    def is_root(self) -> bool: ...

    def shard(self, n_items: int, rank: int | None = None) -> range: ...

    def shard_weighted(self, weights: np.ndarray | Sequence[int], rank: int | None = None) -> range: ...

    def agree(self, error: BaseException | None) -> None: ...

    def collective(self) -> AbstractContextManager[None]: ...

    def run_sharded(self, n_items: int, work: Callable[[range], T], default: T, *,
                    weights: np.ndarray | Sequence[int] | None = None) -> tuple[range, T]: ...

    def allgather_table(self, table: pa.Table) -> pa.Table: ...

    def gather_table(self, table: pa.Table, root: int = 0) -> pa.Table | None: ...

    def bcast_table(self, table: pa.Table | None, root: int = 0) -> pa.Table: ...


class Driver:
    """The engine-independent steps, written once over `agree` and `shard` (an engine inherits them)."""

    def agree(self, error: BaseException | None) -> None:  # pragma: no cover - every engine defines it
        raise NotImplementedError

    def shard(self, n_items: int, rank: int | None = None) -> range:  # pragma: no cover
        raise NotImplementedError

    def shard_weighted(self, weights: np.ndarray | Sequence[int], rank: int | None = None) -> range:  # pragma: no cover
        raise NotImplementedError

    @contextmanager
    def collective(self) -> Iterator[None]:
        """A block every rank runs to its end: an `Exception` inside is caught and handed to `agree`.

        So every rank reaches the check, and if any rank failed every rank raises the same
        `RankError` (a size-1 job re-raises the error itself). Work a rank skips (`if
        comm.is_root:` inside the block) agrees like work it did. `BaseException`s (an interrupt)
        are not caught: they end this process, as they did before.
        """
        error: Exception | None = None
        try:
            yield
        except Exception as exc:  # every rank must reach the check below
            error = exc
        self.agree(error)

    def run_sharded(self, n_items: int, work: Callable[[range], T], default: T, *,
                    weights: np.ndarray | Sequence[int] | None = None) -> tuple[range, T]:
        """This rank's contiguous shard of `n_items` and `work(shard)` (`default` for an empty shard),
        after every rank has agreed that none failed.

        `weights` (one per item, e.g. bytes) balances the shards by weight instead of count.
        """
        mine = self.shard(n_items) if weights is None else self.shard_weighted(weights)
        result = default
        with self.collective():
            if len(mine):
                result = work(mine)
        return mine, result
