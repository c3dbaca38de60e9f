"""Shared by the adapter programs run under `mpiexec -n 2`: count pickles, write a rank's report."""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from mpi4py import MPI

PICKLES = {"dumps": 0, "loads": 0}


def _dumps(obj: Any, *args: Any) -> bytes:
    PICKLES["dumps"] += 1
    return pickle.dumps(obj, *args)


def _loads(data: bytes, *args: Any) -> Any:
    PICKLES["loads"] += 1
    return pickle.loads(data, *args)


def count_pickles() -> dict[str, int]:
    """Route every pickle mpi4py makes through a counter (mpi4py's own hook); returns the live counts."""
    MPI.pickle.__init__(_dumps, _loads)
    return PICKLES


def write_report(work: str, name: str, rank: int, report: dict[str, Any]) -> None:
    Path(work, f"{name}-{rank}.json").write_text(json.dumps(report))
