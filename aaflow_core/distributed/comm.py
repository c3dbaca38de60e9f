"""The rank context: rank/size, contiguous shards, Arrow tables between ranks as IPC bytes.

`Comm.world()` works with and without `mpiexec`: outside an MPI launcher it is a size-1
context and mpi4py is never imported. Under a launcher every exchange goes through mpi4py's
buffer (upper-case) methods on Arrow IPC bytes (`Allgatherv`, `Gatherv`, `Bcast`), so no
Python object is ever pickled between ranks.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from aaflow_core.dataplane.ipc import from_ipc, to_ipc
from aaflow_core.distributed.spmd import Driver
from aaflow_core.errors import AAFlowError, ConfigError, MissingDependencyError, RankError

# Seconds a rank waits at a collective check for the others before it calls them lost (unset: forever).
RANK_TIMEOUT_ENV = "AAFLOW_RANK_TIMEOUT"
_ARRIVE, _GO = 7101, 7102  # point-to-point tags of that check
# Seconds between writing why a job ends and MPI_Abort: hydra's proxy handles the abort as soon
# as it arrives and may be killed before it forwards what the rank wrote to stderr just before.
ABORT_GRACE_S = 1.0

# Environment variables set by MPI launchers (MPICH/Hydra, PMIx/Slurm, Open MPI, MVAPICH).
LAUNCHER_ENV = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def under_launcher() -> bool:
    """True when this process was started by an MPI launcher (mpiexec, srun)."""
    return any(name in os.environ for name in LAUNCHER_ENV)


def rank_timeout() -> float | None:
    """AAFLOW_RANK_TIMEOUT in seconds (the launcher gives every rank the same environment), or None."""
    text = os.environ.get(RANK_TIMEOUT_ENV, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(RANK_TIMEOUT_ENV, text, "must be a number of seconds > 0")
    return value


def mpi() -> Any:
    """The mpi4py.MPI module, imported on first use; a clear error when it is missing."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise MissingDependencyError("mpi4py", "mpi4py mpich") from exc
    return MPI


@dataclass
class CommStats:
    """What this rank sent to other ranks: payload bytes (IPC + size headers) and messages."""

    bytes_sent: int = 0
    messages: int = 0


class Comm(Driver):
    """A rank's view of its job, the MPI engine of `spmd.Engine`. Size 1 without a communicator;
    every collective is then local."""

    def __init__(self, mpi_comm: Any | None = None) -> None:
        self._comm = mpi_comm
        self.rank: int = int(mpi_comm.Get_rank()) if mpi_comm is not None else 0
        self.size: int = int(mpi_comm.Get_size()) if mpi_comm is not None else 1
        self.stats = CommStats()
        self._local_size: int | None = None
        self.timeout_s = rank_timeout() if mpi_comm is not None else None
        self.hosts: tuple[str, ...] | None = None  # rank r's host, once `hosts.placement` has run

    @classmethod
    def world(cls) -> "Comm":
        """COMM_WORLD under an MPI launcher, else a size-1 context (mpi4py not imported)."""
        return cls(mpi().COMM_WORLD) if under_launcher() else cls()

    @classmethod
    def for_ranks(cls, ranks: int | str) -> "Comm":
        """The job an API's `ranks` option asks for: 1 = this process alone (even under mpiexec),
        "auto" = `world()`, N = `world()`, which must then have exactly N ranks."""
        if ranks == 1:
            return cls()
        if ranks != "auto" and not (isinstance(ranks, int) and not isinstance(ranks, bool) and ranks > 1):
            raise ConfigError("ranks", ranks, "must be 'auto' or a positive integer")
        comm = cls.world()
        if ranks != "auto" and comm.size != ranks:
            raise ConfigError("ranks", ranks, f"this process is part of a {comm.size}-rank job; "
                              f"start it with mpiexec -n {ranks}, or use ranks='auto'")
        return comm

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def shard(self, n_items: int, rank: int | None = None) -> range:
        """The contiguous slice of `n_items` (in input order) that `rank` owns.

        The first `n_items % size` ranks take one item more, so shards differ by at most one
        and depend only on `n_items` and `size`.
        """
        r = self.rank if rank is None else rank
        base, extra = divmod(n_items, self.size)
        start = r * base + min(r, extra)
        return range(start, start + base + (1 if r < extra else 0))

    def shard_weighted(self, weights: np.ndarray | Sequence[int], rank: int | None = None) -> range:
        """A contiguous slice that balances summed `weights` (e.g. file bytes) instead of counts.

        The boundary before rank r is the item boundary whose preceding weight is closest to
        r/size of the total (a tie goes to the later boundary); like `shard`, it depends only
        on the weights and `size`.
        """
        r = self.rank if rank is None else rank
        w = np.asarray(weights, dtype=np.int64)
        prefix = np.concatenate([[0], np.cumsum(w)]) * self.size  # weight before each boundary, scaled
        total = int(w.sum())

        def boundary(q: int) -> int:
            if q >= self.size:
                return len(w)
            hi = int(np.searchsorted(prefix, q * total, side="left"))
            if hi > 0 and q * total - prefix[hi - 1] < prefix[min(hi, len(w))] - q * total:
                return hi - 1
            return min(hi, len(w))

        return range(boundary(r), max(boundary(r), boundary(r + 1)))

    def local_size(self) -> int:
        """Ranks on this node (collective on first call); used to split the cores between them."""
        if self._local_size is None:
            if self._comm is None:
                self._local_size = 1
            else:
                node = self._comm.Split_type(mpi().COMM_TYPE_SHARED)
                self._local_size = int(node.Get_size())
                node.Free()
        return self._local_size

    def node(self) -> "Comm":
        """The ranks of this job on this node, as their own Comm (collective; free it with `free`)."""
        if self._comm is None:
            return Comm()
        return Comm(self._comm.Split_type(mpi().COMM_TYPE_SHARED))

    def free(self) -> None:
        """Release a communicator this process made (`node`); COMM_WORLD is never freed."""
        if self._comm is not None and self._comm != mpi().COMM_WORLD:
            self._comm.Free()
        self._comm = None

    def barrier(self) -> None:
        if self._comm is not None:
            self._comm.Barrier()

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (for failures that cannot reach a collective check).

        Output already written is flushed and given ABORT_GRACE_S to reach the launcher first,
        so the reason printed just before is not lost to the abort.
        """
        if self._comm is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            time.sleep(ABORT_GRACE_S)
            self._comm.Abort(code)
        raise SystemExit(code)

    # -- byte exchange: the only place that talks to MPI ---------------------------------
    def _sizes(self, nbytes: int, root: int | None) -> np.ndarray:
        MPI = mpi()
        mine = np.array([nbytes], dtype=np.int64)
        sizes = np.zeros(self.size, dtype=np.int64)
        if root is None:
            self._comm.Allgather([mine, MPI.INT64_T], [sizes, MPI.INT64_T])
        else:
            self._comm.Gather([mine, MPI.INT64_T], [sizes, MPI.INT64_T], root=root)
        return sizes

    def allgather_bytes(self, payload: pa.Buffer) -> list[pa.Buffer]:
        """Every rank's payload, in rank order, on every rank (`Allgatherv`)."""
        if self._comm is None:
            return [payload]
        MPI = mpi()
        sizes = self._sizes(payload.size, None)
        displs = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        recv = np.empty(int(sizes.sum()), dtype=np.uint8)
        self._comm.Allgatherv([payload, MPI.BYTE], [recv, sizes, displs, MPI.BYTE])
        self._count((8 + payload.size) * (self.size - 1), self.size - 1)
        whole = pa.py_buffer(recv)
        return [whole.slice(int(d), int(s)) for d, s in zip(displs, sizes)]

    def gather_bytes(self, payload: pa.Buffer, root: int = 0) -> list[pa.Buffer] | None:
        """Every rank's payload, in rank order, on `root` (`Gatherv`); None elsewhere."""
        if self._comm is None:
            return [payload]
        MPI = mpi()
        sizes = self._sizes(payload.size, root)
        displs = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        recv = np.empty(int(sizes.sum()) if self.rank == root else 0, dtype=np.uint8)
        spec = [recv, sizes, displs, MPI.BYTE] if self.rank == root else None
        self._comm.Gatherv([payload, MPI.BYTE], spec, root=root)
        if self.rank != root:
            self._count(8 + payload.size, 1)
            return None
        whole = pa.py_buffer(recv)
        return [whole.slice(int(d), int(s)) for d, s in zip(displs, sizes)]

    def bcast_bytes(self, payload: pa.Buffer | None, root: int = 0) -> pa.Buffer:
        """`root`'s payload on every rank (`Bcast`)."""
        if self._comm is None:
            assert payload is not None
            return payload
        MPI = mpi()
        size = np.array([payload.size if self.rank == root and payload is not None else 0], dtype=np.int64)
        self._comm.Bcast([size, MPI.INT64_T], root=root)
        if self.rank == root:
            assert payload is not None, "the root must give the payload"
            self._comm.Bcast([payload, MPI.BYTE], root=root)  # the root only reads its buffer
            self._count((8 + payload.size) * (self.size - 1), self.size - 1)
            return payload
        buf = np.empty(int(size[0]), dtype=np.uint8)
        self._comm.Bcast([buf, MPI.BYTE], root=root)
        return pa.py_buffer(buf)

    def _count(self, nbytes: int, messages: int) -> None:
        self.stats.bytes_sent += nbytes
        self.stats.messages += messages

    # -- Arrow tables ------------------------------------------------------------------
    def allgather_table(self, table: pa.Table) -> pa.Table:
        """All ranks' tables concatenated in rank order, on every rank."""
        return _concat(self.allgather_bytes(to_ipc(table)) if self.size > 1 else [table], table.schema)

    def gather_table(self, table: pa.Table, root: int = 0) -> pa.Table | None:
        """All ranks' tables concatenated in rank order on `root`; None on the other ranks."""
        if self.size == 1:
            return table
        parts = self.gather_bytes(to_ipc(table), root)
        return None if parts is None else _concat(parts, table.schema)

    def bcast_table(self, table: pa.Table | None, root: int = 0) -> pa.Table:
        """`root`'s table on every rank (the other ranks pass None)."""
        if self.size == 1:
            assert table is not None
            return table
        payload = to_ipc(table) if self.rank == root and table is not None else None
        return from_ipc(self.bcast_bytes(payload, root))

    # -- failures ----------------------------------------------------------------------
    def agree(self, error: BaseException | None) -> None:
        """Collective failure check: if any rank passes an error, every rank raises RankError.

        The error names the first failing rank (and lists the others), with their hosts when
        the job spans several, so the job ends the same way on every rank and the caller can
        clean up before re-raising. In a size-1 job the error itself is raised again, unchanged.
        """
        if self.size == 1:
            if error is not None:
                raise error
            return
        if self.timeout_s is not None:
            self._rendezvous(self.timeout_s)
        why = "" if error is None else f"{type(error).__name__}: {error}"
        status = pa.table({"rank": pa.array([self.rank], pa.int32()), "host": [socket.gethostname()],
                           "error": pa.array([why], pa.string())})
        rows = self.allgather_table(status).to_pylist()
        failed = [r for r in rows if r["error"]]
        if not failed:
            return
        several_hosts = len({r["host"] for r in rows}) > 1

        def who(r: dict) -> str:
            return f"rank {r['rank']} on {r['host']}" if several_hosts else f"rank {r['rank']}"

        first = failed[0]
        more = "".join(f"; {who(r)} also failed: {r['error']}" for r in failed[1:])
        exc = RankError(first["rank"], first["error"] + more, host=first["host"] if several_hosts else None)
        raise exc from (error if self.rank == first["rank"] else None)

    def _rendezvous(self, timeout: float) -> None:
        """Every rank meets rank 0 within `timeout` s, else the job is aborted naming the missing ranks.

        A host that dies without closing its connections (power, kernel, network) leaves the
        others waiting in the next collective, and hydra does not notice: this turns that into
        an error naming the rank and its host. One byte each way between rank 0 and each rank.
        """
        MPI = mpi()
        token = np.zeros(1, dtype=np.uint8)
        if self.is_root:
            others = list(range(1, self.size))
            bufs = [np.empty(1, dtype=np.uint8) for _ in others]
            reqs = [self._comm.Irecv([b, MPI.BYTE], source=r, tag=_ARRIVE) for r, b in zip(others, bufs)]
            self._lost(_unfinished(reqs, others, timeout), timeout)
            for r in others:
                self._comm.Send([token, MPI.BYTE], dest=r, tag=_GO)
        else:
            self._comm.Send([token, MPI.BYTE], dest=0, tag=_ARRIVE)  # one byte: sent eagerly
            self._lost(_unfinished([self._comm.Irecv([token, MPI.BYTE], source=0, tag=_GO)], [0], timeout), timeout)

    def _lost(self, ranks: list[int], timeout: float) -> None:
        if not ranks:
            return
        where = ", ".join(f"rank {r}" + (f" on {self.hosts[r]}" if self.hosts else "") for r in ranks)
        sys.stderr.write(f"aaflow: rank {self.rank}: {where} did not reach the collective check within "
                         f"{timeout:g}s ({RANK_TIMEOUT_ENV}): lost; aborting the MPI job\n")
        self.abort(1)

    def abort_on_uncaught(self) -> None:
        """Make an exception that escapes every handler end the whole job, naming this rank.

        Without it a rank that dies outside a collective check leaves the others waiting.
        Only the command line installs it; user programs can run under `python -m mpi4py`.
        """
        if self._comm is None or getattr(sys.excepthook, "aaflow_aborts", False):
            return
        previous, rank = sys.excepthook, self.rank

        def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
            previous(kind, value, tb)
            sys.stderr.write(f"aaflow: rank {rank} failed ({kind.__name__}); aborting the MPI job\n")
            self.abort(1)

        hook.aaflow_aborts = True  # type: ignore[attr-defined]
        sys.excepthook = hook


def _unfinished(reqs: list[Any], ranks: list[int], timeout: float) -> list[int]:
    """The ranks whose request is still open after `timeout` seconds of polling (empty once all complete)."""
    deadline, done = time.monotonic() + timeout, [False] * len(reqs)
    while True:
        done = [d or bool(q.Test()) for d, q in zip(done, reqs)]
        if all(done) or time.monotonic() > deadline:
            return [r for r, d in zip(ranks, done) if not d]
        time.sleep(0.002)


def _concat(parts: list[pa.Buffer] | list[pa.Table], schema: pa.Schema) -> pa.Table:
    tables = [p if isinstance(p, pa.Table) else from_ipc(p) for p in parts]
    for rank, t in enumerate(tables):
        if not t.schema.equals(schema):
            raise AAFlowError(f"rank {rank} sent a table with schema {t.schema}, expected {schema}")
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]
