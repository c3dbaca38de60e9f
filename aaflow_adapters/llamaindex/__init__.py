"""LlamaIndex adapter: `AAFlowIngestionPipeline`, a drop-in for `IngestionPipeline`.

Importing it points tiktoken at llama-index-core's bundled cache (unless the user set
TIKTOKEN_CACHE_DIR), so token-based splitters never try to download offline.
"""
import os
from pathlib import Path

import llama_index.core

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache"))

from aaflow_adapters.llamaindex.embeddings import AAFlowEmbedding, accelerated  # noqa: E402
from aaflow_adapters.llamaindex.pipeline import AAFlowIngestionPipeline, RunStats  # noqa: E402
from aaflow_adapters.llamaindex.splitpool import start_split_workers  # noqa: E402

__all__ = ["AAFlowEmbedding", "AAFlowIngestionPipeline", "RunStats", "accelerated", "start_split_workers"]
