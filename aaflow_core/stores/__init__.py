"""On-disk stores: the index-directory protocol (`layout`), the store seam (`protocol`), FAISS segments,
and the durable logs of the adapters' batches (`BatchLog`) and of the agent memory store (`CommitLog`, `MutableIndex`)."""
from aaflow_core.stores.batchlog import BatchLog
from aaflow_core.stores.commit_log import CommitLog
from aaflow_core.stores.faiss_store import IndexReader, IndexWriter
from aaflow_core.stores.layout import is_aaflow_index
from aaflow_core.stores.mutable_index import MutableIndex
from aaflow_core.stores.protocol import StoreReader, StoreWriter

__all__ = [
    "BatchLog", "CommitLog", "IndexReader", "IndexWriter", "MutableIndex", "StoreReader", "StoreWriter", "is_aaflow_index",
]
