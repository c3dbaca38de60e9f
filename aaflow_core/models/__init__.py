"""Model loading for the embedded defaults (offline, from packages on disk)."""
from aaflow_core.models.embedding import SentenceEmbedder, bundled_model_path, cpu_features

__all__ = ["SentenceEmbedder", "bundled_model_path", "cpu_features"]
