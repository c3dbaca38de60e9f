"""Run under `mpiexec -n 2`: a checkpointed `AAFlowIngestionPipeline.run` over the ranks, twice.

argv: BASE_URL WORK. Every rank writes WORK/li-ck-<rank>.json: its checkpoint folders and the
nodes (id, text, embedding) each run returned.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "adapters" / "llamaindex"))
from li_checkpoint_worker import DOCS, transformations  # noqa: E402

from aaflow_adapters.llamaindex import AAFlowIngestionPipeline  # noqa: E402
from aaflow_core.distributed import Comm  # noqa: E402

if __name__ == "__main__":
    base_url, work = sys.argv[1], Path(sys.argv[2])
    runs = []
    for _ in range(2):
        pipeline = AAFlowIngestionPipeline(transformations=transformations(base_url), checkpoint=str(work / "ck"))
        runs.append([[n.node_id, n.get_content(), n.embedding] for n in pipeline.run(documents=list(DOCS[:8]))])
    comm = Comm.world()
    (work / f"li-ck-{comm.rank}.json").write_text(json.dumps({"runs": runs,
                                                             "dirs": sorted(p.name for p in (work / "ck").iterdir())}))
