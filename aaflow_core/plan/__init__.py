"""Plans as plain frozen data: specs, the Workflow builder, pure rewrites, fingerprints."""
from aaflow_core.plan.data import OpSpec, Plan, PlanError, Resources
from aaflow_core.plan.workflow import Workflow
from aaflow_core.plan import specs
from aaflow_core.plan.fingerprint import package_versions
from aaflow_core.plan.placement import available_cpus, default_threads, intra_op_threads

__all__ = [
    "OpSpec", "Plan", "PlanError", "Resources", "Workflow", "available_cpus", "default_threads", "intra_op_threads",
    "package_versions", "specs",
]
