"""`AAFlowRunnable.batch` over MPI ranks: each rank runs its contiguous shard, outputs cross as Arrow.

Under SPMD every rank builds the same chain and passes the same inputs, so only outputs move.
An output crosses ranks as LangChain's own JSON (`langchain_core.load.dumps`, revived with
`loads(allowed_objects="core")`) in a string column of an Arrow table, gathered with
`Comm.allgather_table` (Arrow IPC bytes through mpi4py's buffer methods, never pickle).

- Outputs come back on every rank, in input order. Outputs this rank produced are returned as
  the very objects it produced; the other ranks' outputs are rebuilt from their JSON.
- An output JSON cannot carry exactly (a tuple, a dict with non-string keys, an object
  LangChain cannot serialize) fails on the rank that produced it with `InputError` naming the
  input and the type, so the batch ends with `RankError` on every rank.
- With `return_exceptions=True` a failed input's exception crosses as its type name and
  message and comes back on the other ranks as `RemoteRankError`; on its own rank it is the
  original exception. Without it, a failure on any rank ends the batch on every rank with
  `RankError` naming that rank (`Comm.agree`).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
from langchain_core._api import LangChainBetaWarning
from langchain_core.load import dumps, loads
from langchain_core.runnables import RunnableConfig

from aaflow_core.distributed import Comm
from aaflow_core.errors import AAFlowError, InputError, RankError

SCHEMA = pa.schema([
    ("index", pa.int64()),  # position in the whole batch
    ("rank", pa.int32()),  # the rank that ran it
    ("value", pa.string()),  # LangChain JSON of the output; null for a failed input
    ("error_type", pa.string()),  # qualified exception type name of a failed input
    ("error", pa.string()),  # its message
])

LocalBatch = Callable[[list[Any], list[RunnableConfig]], list[Any]]


class RemoteRankError(RankError):
    """An input's exception raised on another rank, carried as its type name and message."""

    def __init__(self, rank: int, index: int, type_name: str, message: str) -> None:
        AAFlowError.__init__(self, f"input {index} failed on rank {rank}: {type_name}: {message}")
        self.rank = rank
        self.index = index
        self.type_name = type_name
        self.message = message


def type_name(exc: BaseException) -> str:
    kind = type(exc)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def revive(text: str) -> Any:
    """An output from its LangChain JSON (core classes only: outputs are data, not components)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LangChainBetaWarning)
        return loads(text, allowed_objects="core")


def to_json(value: Any, index: int) -> str:
    """LangChain JSON of one output, checked to revive equal to it; InputError naming the input if not."""
    try:
        text = dumps(value)
        same = revive(text) == value
    except Exception as exc:  # the serializer's own complaint, reported against the input
        raise InputError(f"input {index}", f"its output ({type(value).__name__}) cannot cross MPI ranks "
                         f"as LangChain JSON: {type(exc).__name__}: {exc}; return LangChain-serializable "
                         "objects or JSON data, or run with ranks=1") from exc
    if not same:
        raise InputError(f"input {index}", f"its output ({type(value).__name__}) does not survive LangChain "
                         "JSON unchanged (tuples, non-string dict keys and non-serializable objects do not); "
                         "return LangChain-serializable objects or JSON data, or run with ranks=1")
    return text


def encode(outputs: Sequence[Any], start: int, rank: int) -> pa.Table:
    """This rank's outputs (or exceptions) as SCHEMA rows; `start` is the shard's first input."""
    values, kinds, messages = [], [], []
    for i, out in enumerate(outputs, start):
        failed = isinstance(out, Exception)
        values.append(None if failed else to_json(out, i))
        kinds.append(type_name(out) if failed else None)
        messages.append(str(out) if failed else None)
    n = len(outputs)
    return pa.table([pa.array(range(start, start + n), pa.int64()), pa.array([rank] * n, pa.int32()),
                     pa.array(values, pa.string()), pa.array(kinds, pa.string()),
                     pa.array(messages, pa.string())], schema=SCHEMA)


def decode(table: pa.Table, n: int, comm: Comm, mine: range, local: Sequence[Any]) -> list[Any]:
    """Outputs in input order: this rank's own objects, the others' revived from their rows."""
    if table.column("index").to_pylist() != list(range(n)):
        raise AAFlowError(f"ranks returned outputs for different inputs than the {n} on rank {comm.rank}: "
                          "every rank must call batch with the same inputs")
    outputs: list[Any] = [None] * n
    columns = table.select(["rank", "value", "error_type", "error"]).to_pydict()
    for i, (rank, value, kind, message) in enumerate(zip(*columns.values())):
        if i in mine:
            outputs[i] = local[i - mine.start]
        elif kind is not None:
            outputs[i] = RemoteRankError(rank, i, kind, message)
        else:
            outputs[i] = revive(value)
    return outputs


def batch_on_ranks(comm: Comm, inputs: Sequence[Any], configs: Sequence[RunnableConfig],
                   run_local: LocalBatch) -> list[Any]:
    """Run this rank's contiguous shard with `run_local`, share outputs, return all in input order.

    Collective: every rank of `comm` must call it with the same inputs.
    """
    def work(mine: range) -> tuple[list[Any], pa.Table]:
        local = run_local(list(inputs[mine.start:mine.stop]), list(configs[mine.start:mine.stop]))
        return local, encode(local, mine.start, comm.rank)

    mine, (local, table) = comm.run_sharded(len(inputs), work, ([], SCHEMA.empty_table()))
    return decode(comm.allgather_table(table), len(inputs), comm, mine, local)
