"""Run across two simulated hosts (one rank each): native ingest + query, then both adapters.

argv: CORPUS WORK [LOCAL]. Every rank runs, in one job (so each rank loads each model once):
`aaflow ingest CORPUS --index WORK/two`, `aaflow query QUESTION --index WORK/two --json`,
`AAFlowRunnable(chain).batch(INPUTS)` and `AAFlowIngestionPipeline([splitter, model], store).run`;
rank 0 then runs the same pipeline with `ranks=1` (the one-rank reference, same model object);
every rank sends 4 MiB to the other (so the test can see MPI's bytes on the veth pair). Last, with
LOCAL, paths that are not shared: LOCAL holds, on host a only, a copy of the corpus (LOCAL/corpus) and
a one-rank index (LOCAL/index); host b sees an empty directory there. Three commands, each
expected to fail naming the path and host b: ingest into LOCAL/new (staging not shared),
ingest LOCAL/corpus into WORK/from-local (corpus not shared), query LOCAL/index.
Each rank writes WORK/mh-<rank>.json (its host, pid, seconds per step, what it returned) and
WORK/mh-<rank>-<run>.npy (node embeddings).
"""
from __future__ import annotations

import contextlib
import io
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import torch
from adapter_llamaindex import QUESTION, as_json, documents, stable_id, top_ids
from adapter_support import count_pickles, write_report
from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from llama_index.core.node_parser import SentenceSplitter
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llama_index.vector_stores.faiss import FaissVectorStore

from aaflow_adapters.langchain import AAFlowRunnable
from aaflow_adapters.llamaindex import AAFlowIngestionPipeline
from aaflow_core.cli.main import main as aaflow
from aaflow_core.distributed import Comm
from aaflow_core.models.embedding import bundled_model_path
from aaflow_core.operators.embed import models_loaded

INPUTS = [{"q": f"question {i}"} for i in range(7)]
PROBE_BYTES = 4 << 20


def chain() -> Any:
    """An LCEL chain (prompt | chat model | parser step); the tests build the same one."""
    prompt = ChatPromptTemplate.from_template("Q: {q}")
    return prompt | ParrotFakeChatModel() | RunnableLambda(lambda m: {"text": m.content.upper(),
                                                                       "words": len(m.content.split())})


def timed(seconds: dict[str, float], name: str, call: Any) -> Any:
    t0 = time.perf_counter()
    out = call()
    seconds[name] = round(time.perf_counter() - t0, 3)
    return out


def native(corpus: str, work: Path, comm: Comm, seconds: dict[str, float]) -> dict[str, Any]:
    index = str(work / "two")
    common = ["--threads", "1", "--no-progress"]
    rc_ingest = timed(seconds, "ingest", lambda: aaflow(["ingest", corpus, "--index", index, *common]))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # rank 0 prints the --json line; the others print nothing
        rc_query = timed(seconds, "query", lambda: aaflow(["query", QUESTION, "--index", index, "-k", "5", "--json"]))
    return {"rcs": [rc_ingest, rc_query], "query_stdout": out.getvalue(), "models_loaded": models_loaded()}


def llamaindex(work: Path, comm: Comm, seconds: dict[str, float]) -> dict[str, Any]:
    model = timed(seconds, "hf_model_load", lambda: HuggingFaceEmbedding(model_name=str(bundled_model_path()),
                                                                         embed_batch_size=8))
    splitter = SentenceSplitter(chunk_size=96, chunk_overlap=16, id_func=stable_id)
    store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(384))
    pipe = AAFlowIngestionPipeline(transformations=[splitter, model], vector_store=store)
    runs = {"two": timed(seconds, "llamaindex_run", lambda: pipe.run(documents=documents()))}
    query = model.get_query_embedding(QUESTION)
    report: dict[str, Any] = {"nodes_two": as_json(runs["two"]), "faiss_rows": store.client.ntotal,
                              "top_two": top_ids(store, runs["two"], query) if comm.is_root else None}
    if comm.is_root:  # the one-rank reference, with the same model object
        one_store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(384))
        runs["one"] = AAFlowIngestionPipeline(transformations=[splitter, model], vector_store=one_store,
                                              ranks=1).run(documents=documents())
        report.update(nodes_one=as_json(runs["one"]), top_one=top_ids(one_store, runs["one"], query))
    for name, nodes in runs.items():
        np.save(work / f"mh-{comm.rank}-{name}.npy", np.asarray([n.embedding for n in nodes], np.float32))
    return report


def not_shared(corpus: str, work: Path, local: Path) -> dict[str, Any]:
    """Exit code and what was printed on stderr for each command given a host-local path."""
    common = ["--threads", "1", "--no-progress"]
    calls = {
        "index": ["ingest", corpus, "--index", str(local / "new"), *common],
        "corpus": ["ingest", str(local / "corpus"), "--index", str(work / "from-local"), *common],
        "query": ["query", QUESTION, "--index", str(local / "index")],
    }
    report = {}
    for name, argv in calls.items():
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = aaflow(argv)
        report[name] = {"rc": rc, "stderr": err.getvalue()}
    return report


def run(corpus: str, work: Path, local: Path | None) -> None:
    torch.set_num_threads(1)
    comm = Comm.world()
    pickles = count_pickles()
    seconds: dict[str, float] = {}
    report: dict[str, Any] = {"rank": comm.rank, "size": comm.size, "host": socket.gethostname(),
                              "pid": os.getpid(), "seconds": seconds}
    report.update(native(corpus, work, comm, seconds))
    report["answers"] = timed(seconds, "langchain_batch", lambda: AAFlowRunnable(chain()).batch(INPUTS))
    report.update(llamaindex(work, comm, seconds))
    report["pickles"] = dict(pickles)
    payload = pa.table({"b": [np.full(PROBE_BYTES, comm.rank, np.uint8).tobytes()]})  # shows which path MPI takes
    report["probe_ok"] = comm.allgather_table(payload)["b"].to_pylist() == [bytes([r]) * PROBE_BYTES for r in (0, 1)]
    if local is not None:
        report["not_shared"] = not_shared(corpus, work, local)
    write_report(str(work), "mh", comm.rank, report)


if __name__ == "__main__":
    run(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None)
