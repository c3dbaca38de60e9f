"""Map: a user's function over a record batch, checked so a wrong return type names the operator."""
from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from aaflow_core.errors import OperatorError
from aaflow_core.operators.base import Operator


class MapOperator(Operator):
    kind = "map"

    def __init__(self, name: str | None = None, *, fn: Callable[[pa.RecordBatch], pa.RecordBatch]) -> None:
        super().__init__(name)
        self.fn = fn

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        out = self.fn(batch)
        if isinstance(out, pa.Table):
            out = out.combine_chunks().to_batches()[0] if out.num_rows else pa.RecordBatch.from_pylist([], schema=out.schema)
        if not isinstance(out, pa.RecordBatch):
            raise OperatorError(self.name, None, TypeError(f"function returned {type(out).__name__}, expected pyarrow.RecordBatch"))
        return out
