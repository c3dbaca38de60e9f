"""Run across two simulated hosts with AAFLOW_RANK_TIMEOUT set: host b is taken off the network.

argv: WORK. Rank 1 writes WORK/ready and then waits, so that the test takes host b's link
down while rank 0 heads into a collective check (`Comm.agree`): rank 0 must end the job
naming rank 1 and host b instead of waiting forever (hydra does not notice a silent host).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from aaflow_core.distributed import Comm
from aaflow_core.distributed.hosts import placement

if __name__ == "__main__":
    comm = Comm.world()
    placement(comm)
    if comm.rank == 1:
        Path(sys.argv[1], "ready").write_text("ready")
        time.sleep(120)
    comm.agree(None)
    print("the check passed without rank 1", flush=True)
