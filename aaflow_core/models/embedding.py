"""The embedding factory: one entry point that builds the engine a mode names (torch, ONNX Runtime, OpenVINO).

The engines live in their own modules (`torch_backend`, `onnx_backend`, `openvino_backend`) over
`loaders`; this module imports them and nothing imports it back. `Embedder`, `bundled_model_path`
and `resolve_model` are re-exported for callers that build an embedder and name its model.
"""
from __future__ import annotations

from aaflow_core.models.loaders import Embedder, bundled_model_path, resolve_model

__all__ = ["Embedder", "build_embedder", "bundled_model_path", "resolve_model"]


def build_embedder(model: str | None = None, *, precision: str = "fp32", backend: str = "torch",
                   threads: int | None = None, features: frozenset[str] | None = None) -> Embedder:
    """An embedder for a mode (the public entry point for operators and adapters).

    bf16 on a CPU without native bf16 falls back to fp32 with a PrecisionFallbackWarning;
    `embedder.mode` records what was asked for and what runs.
    """
    if backend == "onnx":
        from aaflow_core.models.onnx_backend import OnnxEmbedder

        return OnnxEmbedder(model, precision=precision, threads=threads, features=features)
    if backend == "openvino":
        from aaflow_core.models.openvino_backend import OpenVinoEmbedder

        return OpenVinoEmbedder(model, precision=precision, threads=threads, features=features)
    from aaflow_core.models.torch_backend import SentenceEmbedder

    return SentenceEmbedder(model, threads=threads, precision=precision, features=features)
