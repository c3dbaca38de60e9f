"""Simulated hosts for multi-host MPI tests: Linux network namespaces joined by a veth pair.

Each host is a network namespace with its own stack (loopback + one veth end, 10.77.0.N/24) and,
for every process hydra starts there, its own hostname (a UTS namespace) and its own mounts
(a mount namespace, so a directory can be made local to one host). mpiexec runs on host a, as a
user logged into it would, and reaches the others through `-launcher ssh -launcher-exec SCRIPT`:
hydra calls the script exactly as it would call ssh (`SCRIPT -x HOST "CMD" ARGS...`) and the
script runs the command line in that host's namespaces. Only the namespaces' own addresses are
used (`-localhost 10.77.0.1`, `-hosts 10.77.0.1:R,10.77.0.2:R`). The namespaces are this
process's own (named after its PID) and are deleted on exit, with every process left in them.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.mpi.mpirun import ROOT, mpi_env, mpiexec

SUBNET = "10.77.0"
# MPI traffic over the veth pair: MPICH's OFI netmod with libfabric's tcp provider on veth0. The
# wheel's default UCX netmod sees one kernel and joins the namespaces by shared memory (it
# refuses TCP between them), which would hide the network this simulates.
NETWORK_ENV = {"MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp", "FI_TCP_IFACE": "veth0"}


def cannot_simulate() -> str | None:
    """Why namespaces cannot be made here (None when they can): the reason a test skips with."""
    if os.geteuid() != 0:
        return "simulated hosts need root (network namespaces); run the tests as root"
    for tool, package in (("ip", "iproute2"), ("unshare", "util-linux")):
        if shutil.which(tool) is None:
            return f"simulated hosts need `{tool}` ({package}); `make test` installs it when run as root"
    probe = f"aaflow-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"this machine does not allow network namespaces (`ip netns add` failed: {made.stderr.strip()})"
    try:
        with tempfile.TemporaryDirectory() as where:  # what the launcher does on each host
            inside = subprocess.run(["ip", "netns", "exec", probe, "unshare", "--uts", "--mount", "sh", "-c",
                                     f"hostname {probe} && mount -t tmpfs {probe} {shlex.quote(where)}"],
                                    capture_output=True, text=True)
        if inside.returncode != 0:
            return f"this machine does not allow a host's own hostname and mounts (unshare): {inside.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@dataclass
class Hosts:
    """Hosts a and b; `run` starts an mpiexec job across them."""

    names: list[str]  # network namespaces
    hostnames: list[str]
    launcher: Path
    local_dirs: dict[int, list[Path]] = field(default_factory=dict)

    @property
    def addresses(self) -> list[str]:
        return [f"{SUBNET}.{i + 1}" for i in range(len(self.names))]

    def command(self, args: list[str], per_host: int | list[int] = 1) -> list[str]:
        counts = per_host if isinstance(per_host, list) else [per_host] * len(self.names)
        hosts = ",".join(f"{a}:{c}" for a, c in zip(self.addresses, counts) if c)
        job = [mpiexec(), "-launcher", "ssh", "-launcher-exec", str(self.launcher), "-localhost",
               self.addresses[0], "-hosts", hosts, "-n", str(sum(counts)), sys.executable, *args]
        return [str(self.launcher), "-x", self.addresses[0], shlex.join(job)]  # mpiexec itself runs on host a

    def run(self, args: list[str], per_host: int | list[int] = 1, timeout: float = 180,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`mpiexec` on host a, ranks spread over the hosts (`per_host` each), output captured."""
        try:
            return subprocess.run(self.command(args, per_host), capture_output=True, text=True,
                                  env={**mpi_env(), **NETWORK_ENV, **(env or {})}, timeout=timeout, cwd=ROOT)
        finally:
            self.kill_leftovers()

    def veth_bytes(self, host: int) -> dict[str, int]:
        """Bytes host `host` has sent and received on its veth end (what crossed the simulated network)."""
        shown = subprocess.run(["ip", "-n", self.names[host], "-s", "-j", "link", "show", "veth0"],
                               capture_output=True, text=True, check=True).stdout
        stats = json.loads(shown)[0]["stats64"]
        return {"tx": int(stats["tx"]["bytes"]), "rx": int(stats["rx"]["bytes"])}

    def wait_until_up(self, timeout: float = 10.0) -> None:
        """Wait for both veth ends to be operationally up: until then libfabric finds no veth0 to use."""
        deadline = time.monotonic() + timeout
        while True:
            states = [json.loads(subprocess.run(["ip", "-n", name, "-j", "link", "show", "veth0"], capture_output=True,
                                                text=True, check=True).stdout)[0]["operstate"] for name in self.names]
            if states == ["UP"] * len(self.names):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the simulated hosts' veth pair did not come up: {states}")
            time.sleep(0.05)

    def kill_leftovers(self) -> None:
        """End any process still inside these namespaces (a job that timed out)."""
        for name in self.names:
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass


def launcher_script(names: list[str], hostnames: list[str], local_dirs: dict[int, list[Path]]) -> str:
    """The ssh stand-in: `SCRIPT -x HOST CMDLINE...` runs CMDLINE in HOST's namespaces via sh -c."""
    cases = []
    for i, (ns, hostname) in enumerate(zip(names, hostnames)):
        mounts = "".join(f"mount -t tmpfs aaflow-local {shlex.quote(str(d))}; " for d in local_dirs.get(i, []))
        setup = shlex.quote(f"hostname {hostname}; {mounts}")
        cases.append(f"  {SUBNET}.{i + 1}) ns={ns}; setup={setup};;")
    return "\n".join([
        "#!/bin/sh",
        "# Called by hydra as it would call ssh: -x HOST \"CMD\" ARGS... (one command line for a shell).",
        '[ "$1" = "-x" ] && shift',
        'host=$1; shift',
        'case $host in', *cases, '  *) echo "no simulated host $host" >&2; exit 255;;', 'esac',
        'exec ip netns exec "$ns" unshare --uts --mount sh -c "$setup $*"', ""])


def sh(*cmd: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed: {done.stderr.strip()}")


@contextmanager
def simulated_hosts(work: Path, local_dirs: dict[int, list[Path]] | None = None) -> Iterator[Hosts]:
    """Hosts a and b (10.77.0.1, 10.77.0.2) joined by a veth pair; `local_dirs[i]` are private to host i.

    Everything is removed on exit, also when the body or the set-up fails.
    """
    names = [f"aaflow-{os.getpid()}-{c}" for c in "ab"]
    hostnames = ["host-a", "host-b"]
    launcher = work / "ssh-to-host"
    launcher.write_text(launcher_script(names, hostnames, local_dirs or {}))
    launcher.chmod(0o755)
    hosts = Hosts(names, hostnames, launcher, local_dirs or {})
    made: list[str] = []
    try:
        for name in names:
            sh("ip", "netns", "add", name)
            made.append(name)
        sh("ip", "link", "add", "veth0", "netns", names[0], "type", "veth", "peer", "name", "veth0", "netns", names[1])
        for i, name in enumerate(names):
            sh("ip", "-n", name, "link", "set", "veth0", "addrgenmode", "none")  # IPv4 only: no tentative IPv6
            sh("ip", "-n", name, "addr", "add", f"{SUBNET}.{i + 1}/24", "dev", "veth0")
            sh("ip", "-n", name, "link", "set", "veth0", "up")
            sh("ip", "-n", name, "link", "set", "lo", "up")
        hosts.wait_until_up()
        yield hosts
    finally:
        hosts.names = made
        hosts.kill_leftovers()
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
