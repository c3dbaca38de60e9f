"""The process-wide hooks an aaflow run relies on, installed by each entry point that opens a run's gate.

`lean_openai` routes ChatOpenAI/OpenAIEmbeddings calls made inside a run to aaflow's remote client;
`retriever_batching` coalesces retriever calls made inside graphs. Both are idempotent and inert
outside a run. They live here, not in `RemoteGate`, because both import `remote` themselves.
"""
from __future__ import annotations

from aaflow_adapters.langchain import lean_openai, retriever_batching


def install_hooks() -> None:
    lean_openai.install()
    retriever_batching.install()
