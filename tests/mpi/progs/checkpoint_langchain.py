"""Run under `mpiexec -n 2`: a checkpointed `AAFlowRunnable(chain).batch` over the ranks, twice.

argv: WORK. The first call fails inputs 3 and 12 (return_exceptions=True); the second, with
the same checkpoint, must run only those two, each on the rank whose shard holds it. Every
rank writes WORK/ck-<rank>.json.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from langchain_core.runnables import RunnableLambda

from aaflow_adapters.langchain import AAFlowRunnable
from aaflow_core.distributed import Comm

INPUTS = [{"q": f"question {i}"} for i in range(20)]
ran: list[int] = []
failing = {3, 12}


def answer(x: dict) -> dict:
    i = int(x["q"].split()[1])
    ran.append(i)
    if i in failing:
        raise ValueError(f"no answer for {i}")
    return {"i": i, "text": x["q"].upper()}


if __name__ == "__main__":
    work = Path(sys.argv[1])
    comm = Comm.world()
    wrapped = AAFlowRunnable(RunnableLambda(answer), checkpoint=work / "ck", batch_size=3)
    first = wrapped.batch(INPUTS, return_exceptions=True)
    first_ran = sorted(ran)
    failing.clear()
    ran.clear()
    second = wrapped.batch(INPUTS, return_exceptions=True)
    report = {"first_failed": [i for i, o in enumerate(first) if isinstance(o, Exception)], "first_ran": first_ran,
              "second_ran": sorted(ran), "second": second,
              "dirs": sorted(p.name for p in (work / "ck").iterdir())}
    (work / f"ck-{comm.rank}.json").write_text(json.dumps(report))
