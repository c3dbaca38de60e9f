"""Arrow schemas, the one module where Arrow meets NumPy, and IPC framing."""
from aaflow_core.dataplane.schemas import CHUNKS, DOCUMENTS, PATHS, chunks_with_embedding, embedding_type
from aaflow_core.dataplane.views import buffer_address, embedding_column, embedding_matrix
from aaflow_core.dataplane.ipc import from_ipc, to_ipc
from aaflow_core.dataplane.batch import SeqBatch

__all__ = [
    "CHUNKS", "DOCUMENTS", "PATHS", "SeqBatch", "buffer_address", "chunks_with_embedding",
    "embedding_column", "embedding_matrix", "embedding_type", "from_ipc", "to_ipc",
]
