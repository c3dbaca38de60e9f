"""`AAFlowIngestionPipeline(..., checkpoint=DIR)`: embeddings committed per micro-batch, never requested twice.

The embedding step asks `CheckpointedModel` instead of the model: a micro-batch whose texts all
have a committed vector is answered from DIR; any other is sent to the model as it is (the
same request an uninterrupted run sends) and its vectors are committed, fsynced, before they
are returned. Vectors are kept as the model's own float values (float64, exact), keyed by the
sha256 of the text, under a header naming the model's settings: a checkpoint made with
another model is refused. Micro-batch boundaries depend only on the inputs, so a rerun after
a crash sends exactly the micro-batches that had not finished, and the docstore and vector
store are written once, at the end, as in an uninterrupted run. Under MPI each rank keeps
its own DIR/rank-R-of-N.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.ingestion.pipeline import remove_unstable_values

from aaflow_core.distributed import Comm
from aaflow_core.errors import CheckpointError
from aaflow_core.stores import BatchLog

SCHEMA = pa.schema([("key", pa.string()), ("embedding", pa.list_(pa.float64()))])


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_identity(model: BaseEmbedding) -> str:
    """sha256 of the model's settings as the ingestion cache sees them (class, name, batch size, ...)."""
    return hashlib.sha256(remove_unstable_values(str(model.to_dict())).encode("utf-8")).hexdigest()


def rank_dir(checkpoint: str | os.PathLike[str] | None, comm: Comm) -> str | None:
    if checkpoint is None:
        return None
    return str(Path(checkpoint) / f"rank-{comm.rank}-of-{comm.size}") if comm.size > 1 else str(checkpoint)


class EmbeddingCheckpoint:
    """text key -> committed vector, for one model, in one directory (one process at a time)."""

    def __init__(self, work: str | os.PathLike[str], model: BaseEmbedding) -> None:
        self.log = BatchLog(Path(work), {"kind": "llamaindex-embeddings", "model": model_identity(model),
                                         "model_class": type(model).__name__})
        self.vectors: dict[str, list[float]] = {}
        self.requested = 0  # micro-batches sent to the model by this run
        self.served = 0  # micro-batches answered from the checkpoint
        self._lock = threading.Lock()
        try:
            for table in self.log.tables():
                keys = table.column("key").to_pylist()
                column = table.column("embedding").combine_chunks()
                offsets = column.offsets.to_numpy()
                values = column.values.to_numpy()
                for k, key in enumerate(keys):
                    self.vectors[key] = values[offsets[k]:offsets[k + 1]].tolist()
        except BaseException:
            self.log.close()
            raise

    def lookup(self, texts: Sequence[str]) -> list[list[float]] | None:
        """The vectors of a whole micro-batch, or None if any text has none yet."""
        with self._lock:
            found = [self.vectors.get(text_key(t)) for t in texts]
            if any(v is None for v in found):
                return None
            self.served += 1
        return found  # type: ignore[return-value]

    def commit(self, texts: Sequence[str], vectors: Sequence[Sequence[float]]) -> None:
        keys = [text_key(t) for t in texts]
        lengths = {len(v) for v in vectors}
        flat = np.asarray([x for v in vectors for x in v], dtype=np.float64)
        offsets = np.cumsum([0, *(len(v) for v in vectors)]).astype(np.int32)
        column = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))
        if len(lengths) > 1:
            raise CheckpointError(f"the model returned vectors of sizes {sorted(lengths)} in one micro-batch")
        with self._lock:
            self.log.commit(pa.table([pa.array(keys, pa.string()), column], schema=SCHEMA))
            self.vectors.update(zip(keys, (list(v) for v in vectors)))
            self.requested += 1

    def close(self) -> None:
        self.log.close()

    def __enter__(self) -> "EmbeddingCheckpoint":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CheckpointedModel:
    """What the embedding step calls: the model's batch methods, answered from the checkpoint when it can."""

    def __init__(self, model: BaseEmbedding, store: EmbeddingCheckpoint) -> None:
        self.model = model
        self.store = store

    def get_text_embedding_batch(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
        found = self.store.lookup(texts)
        if found is not None:
            return found
        out = self.model.get_text_embedding_batch(texts, **kwargs)
        if len(out) == len(texts):  # a wrong count is the caller's error to report, not a part to keep
            self.store.commit(texts, out)
        return out

    async def aget_text_embedding_batch(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
        found = self.store.lookup(texts)
        if found is not None:
            return found
        out = await self.model.aget_text_embedding_batch(texts, **kwargs)
        if len(out) == len(texts):
            await asyncio.to_thread(self.store.commit, texts, out)  # fsync off the event loop
        return out


def checkpointed(model: Any, store: EmbeddingCheckpoint | None) -> Any:
    """What the embedding step should call: `model`, through `store` when the run has a checkpoint."""
    return model if store is None else CheckpointedModel(model, store)
