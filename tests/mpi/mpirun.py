"""Helpers for tests that start real `mpiexec -n 2` jobs (the venv's MPICH)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROGS = Path(__file__).resolve().parent / "progs"


def mpiexec() -> str:
    """The mpiexec beside this interpreter (installed by the `mpich` wheel), else one on PATH."""
    here = Path(sys.executable).with_name("mpiexec")
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.fail("mpiexec not found: install the project (pip install mpich mpi4py)")
    return found


def mpi_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "OMPI_"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return env


def run_mpi(args: list[str], n: int = 2, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`mpiexec -n N python ARGS...`, output captured."""
    cmd = [mpiexec(), "-n", str(n), sys.executable, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=mpi_env(), timeout=timeout, cwd=ROOT)
