"""Where the ranks run, and the checks that a multi-host job needs and one machine hides.

On one machine every rank sees every path rank 0 sees. Across hosts that holds only for a
file system every host mounts, so the ingest and query paths check it, collectively, before
any work: rank 0 writes a probe file into the staging directory and every rank looks for it;
every rank checks that its corpus files are there with the size rank 0 measured; every rank
checks that the index it searches is byte for byte the manifest rank 0 reads. A failure names
the path, the host and the rank, on every rank.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from aaflow_core.distributed.comm import Comm
from aaflow_core.errors import SharedPathError
from aaflow_core.plan.placement import available_cpus, intra_op_threads

PLACE = pa.schema([("rank", pa.int32()), ("host", pa.string()), ("pid", pa.int64())])
SEEN = pa.schema([("rank", pa.int32()), ("host", pa.string()), ("seen", pa.string())])
CPUS = pa.schema([("cpus", pa.list_(pa.int32()))])
SHARED_HINT = "put it on a file system that every host of the job mounts at the same path"


@dataclass(frozen=True)
class Placement:
    """Every rank's host and process id, in rank order (the same on every rank)."""

    hosts: tuple[str, ...]  # hosts[r] runs rank r
    pids: tuple[int, ...]

    def ranks_per_host(self) -> list[dict[str, object]]:
        return ranks_per_host(self.hosts)

    def describe(self) -> str:
        """`rank 0 pid 12 on host-a, ...`: hydra and srun name a dead process by PID and host."""
        return ", ".join(f"rank {r} pid {p} on {h}" for r, (h, p) in enumerate(zip(self.hosts, self.pids)))


def ranks_per_host(hosts: Sequence[str]) -> list[dict[str, object]]:
    """[{"host": h, "ranks": [r, ...]}] for hosts[r] = rank r's host, in the order of each host's first rank."""
    groups: dict[str, list[int]] = {}
    for rank, host in enumerate(hosts):
        groups.setdefault(host, []).append(rank)
    return [{"host": h, "ranks": ranks} for h, ranks in groups.items()]


def placement(comm: Comm) -> Placement:
    """Collective: which host runs each rank (its hostname). Recorded on `comm` (`comm.hosts`), so
    that a later lost-rank error names the host."""
    me = pa.Table.from_pydict({"rank": [comm.rank], "host": [socket.gethostname()], "pid": [os.getpid()]},
                              schema=PLACE)
    table = comm.allgather_table(me)
    where = Placement(tuple(table.column("host").to_pylist()), tuple(table.column("pid").to_pylist()))
    comm.hosts = where.hosts
    return where


def threads_for(masks: Sequence[Sequence[int]], node_rank: int) -> int:
    """Intra-op threads for rank `node_rank` of a node whose ranks may run on `masks` (affinity CPU ids).

    Disjoint masks mean the launcher bound each rank to its own cores (`srun --cpu-bind`,
    `-bind-to core:T`): a rank uses all of its own. Otherwise the ranks share the CPUs and
    split them (`plan.placement`), so a node is used once.
    """
    mine = list(masks[node_rank])
    if len(masks) == 1 or sum(map(len, masks)) == len(set().union(*map(set, masks))):
        return intra_op_threads(mine, 1)
    return intra_op_threads(mine, len(masks), node_rank)


def threads_per_rank(comm: Comm) -> int:
    """Collective: this rank's default thread count, from the CPU masks of the ranks on its node."""
    if comm.size == 1:
        return threads_for([available_cpus()], 0)
    node = comm.node()
    try:
        mine = pa.Table.from_pydict({"cpus": [list(available_cpus())]}, schema=CPUS)
        masks = node.allgather_table(mine).column("cpus").to_pylist()
        return threads_for(masks, node.rank)
    finally:
        node.free()


def _compare(comm: Comm, seen: str) -> tuple[str, list[tuple[int, str, str]]]:
    """Collective: rank 0's host, and (rank, host, what it saw) for every rank whose `seen` is not rank 0's."""
    mine = pa.Table.from_pydict({"rank": [comm.rank], "host": [socket.gethostname()], "seen": [seen]}, schema=SEEN)
    rows = comm.allgather_table(mine).to_pylist()
    return rows[0]["host"], [(r["rank"], r["host"], r["seen"]) for r in rows if r["seen"] != rows[0]["seen"]]


def _where(bad: list[tuple[int, str, str]]) -> str:
    return ", ".join(f"{host} (rank {rank})" for rank, host, _ in bad)


def require_shared_dir(comm: Comm, directory: Path, what: str) -> None:
    """Collective: every rank must see the directory rank 0 made (else SharedPathError on every rank).

    Rank 0 writes a probe file with a random token into `directory`; each rank reads it back.
    """
    if comm.size == 1:
        return
    probe = directory / ".aaflow-shared-probe"
    with comm.collective():
        if comm.is_root:
            probe.write_text(secrets.token_hex(16))
    try:
        root_host, bad = _compare(comm, _read(probe))
    finally:
        if comm.is_root:
            probe.unlink(missing_ok=True)
    if bad:
        raise SharedPathError(f"{what} {directory} is not shared: rank 0 made it on {root_host}, "
                              f"but it is not there on {_where(bad)}; {SHARED_HINT}")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return "(missing)"


def missing_inputs(files: Sequence[tuple[str, int]]) -> list[str]:
    """The files (path, bytes rank 0 measured) that this rank cannot see, or sees with another size."""
    out = []
    for path, size in files:
        try:
            here = max(1, os.stat(path).st_size)
        except OSError:
            out.append(f"{path} (not found)")
            continue
        if here != size:
            out.append(f"{path} ({here} bytes here, {size} on rank 0)")
    return out


def require_inputs(comm: Comm, files: Sequence[tuple[str, int]]) -> None:
    """Collective: each rank checks its share of the input files (path, bytes rank 0 measured).

    A rank that lacks one ends the job on every rank (RankError naming the rank and host,
    caused by SharedPathError naming the file).
    """
    with comm.collective():
        gone = missing_inputs(files)
        if gone:
            more = f" and {len(gone) - 1} more" if len(gone) > 1 else ""
            raise SharedPathError(f"input {gone[0]}{more} is not visible to rank {comm.rank} on "
                                  f"{socket.gethostname()}, though rank 0 found it: the corpus is not shared; "
                                  f"{SHARED_HINT}")


def require_same_file(comm: Comm, path: Path, what: str) -> None:
    """Collective: every rank must read the same bytes at `path` as rank 0 (an index's manifest)."""
    if comm.size == 1:
        return
    try:
        seen = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        seen = "missing"
    root_host, bad = _compare(comm, seen)
    if bad:
        how = "missing" if all(s == "missing" for _, _, s in bad) else "missing or different"
        raise SharedPathError(f"{what} {path} is {how} on {_where(bad)} (rank 0 reads it on {root_host}); "
                              f"{SHARED_HINT}")
