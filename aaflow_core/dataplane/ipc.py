"""Arrow IPC framing: what crosses threads-as-bytes and MPI ranks, never pickle."""
from __future__ import annotations

import pyarrow as pa


def to_ipc(data: pa.Table | pa.RecordBatch) -> pa.Buffer:
    """Serialize a table or batch as one Arrow IPC stream buffer."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write(data)
    return sink.getvalue()


def from_ipc(buf: pa.Buffer | bytes | memoryview) -> pa.Table:
    """Read an IPC stream buffer back; the table's buffers point into `buf` (no copy)."""
    return pa.ipc.open_stream(pa.py_buffer(buf) if not isinstance(buf, pa.Buffer) else buf).read_all()
