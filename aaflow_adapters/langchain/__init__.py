"""LangChain drop-in: `AAFlowRunnable(chain)` runs any chain's batch calls on aaflow; `index_documents`
ingests with overlapped split/embed/upsert stages; `index`/`aindex` are langchain_core's incremental
indexing API with embedding overlapped; `AAFlowEmbeddings` is the bundled model on aaflow's fastest
exact engine. Requires `pip install aaflow[frameworks]`."""
from aaflow_adapters.langchain.embeddings import AAFlowEmbeddings, accelerated
from aaflow_adapters.langchain.indexing import aindex, index
from aaflow_adapters.langchain.ingest import index_documents
from aaflow_adapters.langchain.runnable import AAFlowRunnable
from aaflow_adapters.langchain.translate import translate

__all__ = ["AAFlowEmbeddings", "AAFlowRunnable", "accelerated", "aindex", "index", "index_documents", "translate"]
