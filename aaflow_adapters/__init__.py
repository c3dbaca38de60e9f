"""Adapters: LangChain and LlamaIndex objects translated onto aaflow_core plans."""
