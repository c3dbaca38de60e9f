"""On-disk vector stores: the index-directory protocol (`layout`), the store seam (`protocol`), FAISS segments."""
from aaflow_core.stores.batchlog import BatchLog
from aaflow_core.stores.faiss_store import IndexReader, IndexWriter
from aaflow_core.stores.layout import is_aaflow_index
from aaflow_core.stores.protocol import StoreReader, StoreWriter

__all__ = ["BatchLog", "IndexReader", "IndexWriter", "StoreReader", "StoreWriter", "is_aaflow_index"]
