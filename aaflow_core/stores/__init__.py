"""On-disk vector stores: a FAISS index with its rows in Parquet beside it."""
from aaflow_core.stores.faiss_store import IndexReader, IndexWriter, is_aaflow_index

__all__ = ["IndexReader", "IndexWriter", "is_aaflow_index"]
