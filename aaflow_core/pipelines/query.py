"""The query job: embed a batch of questions once, one batched FAISS search, hits per question."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from aaflow_core.plan import Resources, Workflow, specs
from aaflow_core.runtime import Executor, bind
from aaflow_core.stores.faiss_store import read_manifest


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    source: str
    chunk_id: str
    text: str


def index_model(index_dir: str | os.PathLike[str]) -> str | None:
    """The model an index was built with (None: the bundled default), read from its plan."""
    plan = json.loads(read_manifest(Path(index_dir))["plan"])
    embed = next((op for op in plan["ops"] if op["kind"] == "embed"), None)
    return json.loads(embed["params"]).get("model") if embed else None


def query(index_dir: str | os.PathLike[str], questions: Sequence[str], k: int = 5, *,
          threads: int = 1, batch_size: int = 32) -> list[list[Hit]]:
    """Top-k hits for each question, in question order."""
    model = index_model(index_dir)
    wf = Workflow(Resources(threads=threads))
    wf.add(specs.embed(model=model, window=max(batch_size, len(questions) or 1), encode_batch_size=batch_size))
    wf.add(specs.retrieve(index_dir=str(index_dir), k=k))
    source = pa.RecordBatch.from_pydict({"qid": pa.array(range(len(questions)), pa.int64()),
                                         "text": pa.array(list(questions), pa.string())})
    hits: list[list[Hit]] = [[] for _ in questions]
    with Executor(bind(wf.compile()), backend="serial") as ex:
        for out in ex.run([source]):
            for row in out.to_pylist():
                hits[row["qid"]].append(Hit(row["rank"] + 1, row["score"], row["source"], row["chunk_id"], row["text"]))
    return hits
