"""Model loading for the embedded defaults (offline, from packages on disk), in several precision modes."""
from aaflow_core.models.cpu import cpu_features, cpu_line, cpu_summary
from aaflow_core.models.embedding import Embedder, SentenceEmbedder, build_embedder, bundled_model_path
from aaflow_core.models.modes import (
    BACKENDS, PRECISIONS, TOLERANCES, EmbedMode, PrecisionFallbackWarning, ResolvedMode, check_mode, resolve_mode,
)

__all__ = [
    "BACKENDS", "PRECISIONS", "TOLERANCES", "EmbedMode", "Embedder", "PrecisionFallbackWarning", "ResolvedMode",
    "SentenceEmbedder", "build_embedder", "bundled_model_path", "check_mode", "cpu_features", "cpu_line",
    "cpu_summary", "resolve_mode",
]
