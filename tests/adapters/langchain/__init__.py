"""LangChain adapter: AAFlowRunnable and index_documents against stock LangChain."""
