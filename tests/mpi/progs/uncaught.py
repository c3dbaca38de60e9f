"""Run under `mpiexec -n 2`: rank 1 raises outside any collective check while rank 0 waits.

With `Comm.abort_on_uncaught()` (what the CLI installs) the job must end, naming rank 1,
instead of leaving rank 0 waiting forever.
"""
from __future__ import annotations

from aaflow_core.distributed import Comm

comm = Comm.world()
comm.abort_on_uncaught()
if comm.rank == 1:
    raise RuntimeError("escaped every handler")
comm.barrier()
print("rank 0 passed the barrier: the job did not end")
