"""The runtime: binds a plan to operators and runs it on a backend (serial reference, threads)."""
from aaflow_core.runtime.bind import bind
from aaflow_core.runtime.executor import EXECUTOR_BACKENDS, Executor, StageStats

__all__ = ["EXECUTOR_BACKENDS", "Executor", "StageStats", "bind"]
