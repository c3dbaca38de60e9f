"""Model loading for the embedded defaults (offline, from packages on disk), in several precision modes.

The public API (what aaflow_core's other layers and the adapters import): the factory
`build_embedder`, the `Embedder` protocol, the bundled model's path, the modes and the CPU probe.
"""
from aaflow_core.models.cpu import cpu_features, cpu_line, cpu_summary
from aaflow_core.models.embedding import build_embedder
from aaflow_core.models.loaders import Embedder, bundled_model_path, resolve_model
from aaflow_core.models.modes import (
    AUTO, ENGINES, PRECISIONS, TOLERANCES, EmbedMode, PrecisionFallbackWarning, ResolvedMode, check_mode, check_request,
    resolve_mode,
)
from aaflow_core.models.torch_backend import SentenceEmbedder

__all__ = [
    "AUTO", "ENGINES", "PRECISIONS", "TOLERANCES", "EmbedMode", "Embedder", "PrecisionFallbackWarning",
    "ResolvedMode", "SentenceEmbedder", "build_embedder", "bundled_model_path", "check_mode", "check_request",
    "cpu_features", "cpu_line", "cpu_summary", "resolve_model", "resolve_mode",
]
