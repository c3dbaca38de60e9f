"""The query job: embed a batch of questions once, one batched FAISS search, hits per question."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from aaflow_core.distributed import Comm, distributed_search
from aaflow_core.plan import Resources, Workflow, specs
from aaflow_core.runtime import Executor, bind
from aaflow_core.stores.layout import read_manifest


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    source: str
    chunk_id: str
    text: str


def index_embedding(index_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """How the index embedded its chunks (model; endpoint and limits when remote), read from its plan."""
    plan = json.loads(read_manifest(Path(index_dir))["plan"])
    embed = next((op for op in plan["ops"] if op["kind"] == "embed"), None)
    params = json.loads(embed["params"]) if embed else {}
    return {k: params[k] for k in ("model", "endpoint", "rpm", "tpm") if k in params}


def embed_questions(index_dir: str | os.PathLike[str], questions: Sequence[str], *, threads: int = 1,
                    batch_size: int = 32) -> pa.Table:
    """(qid, embedding) rows for `questions`, embedded with the index's model in one window."""
    wf = Workflow(Resources(threads=threads))
    wf.add(specs.embed(**index_embedding(index_dir), window=max(batch_size, len(questions) or 1),
                       encode_batch_size=batch_size))
    source = pa.RecordBatch.from_pydict({"qid": pa.array(range(len(questions)), pa.int64()),
                                         "text": pa.array(list(questions), pa.string())})
    with Executor(bind(wf.compile()), backend="serial") as ex:
        return pa.Table.from_batches(list(ex.run([source]))).select(["qid", "embedding"])


def query(index_dir: str | os.PathLike[str], questions: Sequence[str], k: int = 5, *,
          threads: int = 1, batch_size: int = 32, comm: Comm | None = None) -> list[list[Hit]]:
    """Top-k hits for each question, in question order, on every rank.

    Works on a 1-rank or an N-rank (sharded) index alike. Under MPI, rank 0 embeds the
    questions and broadcasts them; each rank searches its share of the shards (see
    `aaflow_core.distributed.distributed_search`). Ties go to the earlier row.
    """
    comm = comm if comm is not None else Comm.world()
    queries = None
    with comm.collective():  # the other ranks wait for these queries: fail them too
        if comm.is_root:
            queries = embed_questions(index_dir, questions, threads=threads, batch_size=batch_size)
    hits: list[list[Hit]] = [[] for _ in questions]
    for row in distributed_search(comm, index_dir, queries, k).to_pylist():
        hits[row["qid"]].append(Hit(row["rank"] + 1, row["score"], row["source"], row["chunk_id"], row["text"]))
    return hits
