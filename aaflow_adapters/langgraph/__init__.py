"""LangGraph adapter: agent memory (`BaseStore`) on aaflow's vector index."""
from aaflow_adapters.langgraph.store import AAFlowStore

__all__ = ["AAFlowStore"]
