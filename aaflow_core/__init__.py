"""aaflow core: Arrow operators, a streaming deterministic executor, FAISS stores, MPI scale-out.

Never imports LangChain or LlamaIndex; the adapters build on the API exported here.
"""
from aaflow_core.errors import AAFlowError, ConfigError, InputError, OperatorError
from aaflow_core.plan import OpSpec, Plan, Resources, Workflow, specs
from aaflow_core.runtime import Executor, bind

__version__ = "0.1.0"

__all__ = [
    "AAFlowError", "ConfigError", "Executor", "InputError", "OpSpec", "OperatorError", "Plan", "Resources",
    "Workflow", "bind", "specs",
]
