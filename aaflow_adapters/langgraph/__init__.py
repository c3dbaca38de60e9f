"""LangGraph adapter: agent memory (`BaseStore`) on aaflow's vector index, and dual-path recall."""
from aaflow_adapters.langgraph.recall import DualRetriever, MergeWeights
from aaflow_adapters.langgraph.store import AAFlowStore

__all__ = ["AAFlowStore", "DualRetriever", "MergeWeights"]
