"""Thread and process placement: which CPUs each rank owns and how many intra-op threads it runs.

A pure function of the declared resources (the CPU ids available and the rank count), so a
given configuration always places the same way. Every CPU is used once: CPUs are split into
contiguous groups, one per rank, the first `len(cpus) % ranks` ranks taking one extra; a rank's
model runs one intra-op thread per CPU it owns. With more ranks than CPUs, each rank gets one
thread and CPUs are shared round-robin (`oversubscribed`). The embedding's output bits do not
depend on the intra-op thread count (checked for torch and ONNX Runtime), so uneven groups
do not change results.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from aaflow_core.errors import ConfigError


@dataclass(frozen=True)
class RankPlacement:
    rank: int
    threads: int
    cpus: tuple[int, ...]
    oversubscribed: bool = False


def available_cpus() -> tuple[int, ...]:
    """CPU ids this process may run on (its affinity mask), sorted; the input to `place`."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


def place(cpus: Sequence[int] | int, ranks: int = 1) -> tuple[RankPlacement, ...]:
    """One placement per rank; `cpus` is a list of CPU ids or a CPU count (ids 0..n-1)."""
    ids = tuple(range(cpus)) if isinstance(cpus, int) else tuple(sorted(set(cpus)))
    if not ids:
        raise ConfigError("cpus", cpus, "need at least one CPU")
    if not isinstance(ranks, int) or ranks < 1:
        raise ConfigError("ranks", ranks, "must be an integer >= 1")
    if ranks > len(ids):
        return tuple(RankPlacement(r, 1, (ids[r % len(ids)],), True) for r in range(ranks))
    base, extra = divmod(len(ids), ranks)
    out, start = [], 0
    for rank in range(ranks):
        size = base + (1 if rank < extra else 0)
        out.append(RankPlacement(rank, size, ids[start : start + size]))
        start += size
    return tuple(out)


def intra_op_threads(cpus: Sequence[int] | int, ranks: int = 1, rank: int = 0) -> int:
    """Intra-op threads for `rank` of `ranks` sharing `cpus` (what IngestConfig.threads should be)."""
    placements = place(cpus, ranks)
    if not 0 <= rank < ranks:
        raise ConfigError("rank", rank, f"must be in [0, {ranks})")
    return placements[rank].threads


def default_threads() -> int:
    """Intra-op threads for a single-rank run: every CPU this process may use, once."""
    return intra_op_threads(available_cpus(), ranks=1)
