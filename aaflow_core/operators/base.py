"""The operator contract: the columns it reads (checked on every batch) and `process(batch) -> batch`."""
from __future__ import annotations

from typing import ClassVar

import pyarrow as pa

from aaflow_core.errors import OperatorError


class Operator:
    """Base class. Queues, counters and progress live in the runtime, not here."""

    kind: ClassVar[str] = "operator"
    reads: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str | None = None) -> None:
        self.name = name or self.kind

    def open(self) -> None:
        """Acquire heavy state (models, files) once, before the first batch."""

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        raise NotImplementedError

    def finish(self) -> None:
        """Called once after the last batch of a successful run."""

    def close(self) -> None:
        """Always called at the end of a run, successful or not."""

    def check_input(self, batch: pa.RecordBatch) -> None:
        missing = [c for c in self.reads if c not in batch.schema.names]
        if missing:
            raise OperatorError(self.name, None, KeyError(f"input lacks column(s) {missing}; has {batch.schema.names}"))
