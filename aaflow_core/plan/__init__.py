"""Plans as plain frozen data: specs, the Workflow builder, pure rewrites, fingerprints."""
from aaflow_core.plan.data import OpSpec, Plan, PlanError, Resources
from aaflow_core.plan.workflow import Workflow
from aaflow_core.plan import specs
from aaflow_core.plan.fingerprint import package_versions

__all__ = ["OpSpec", "Plan", "PlanError", "Resources", "Workflow", "package_versions", "specs"]
