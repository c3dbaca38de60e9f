"""OpenAI-compatible HTTP serving (aiohttp): chat completions and embeddings with server-side batching.

What the tests and benchmarks talk to over real HTTP on 127.0.0.1, and what a user can point
LangChain's `ChatOpenAI`/`OpenAIEmbeddings` or LlamaIndex's OpenAI classes at; API keys, request
limits and a bounded wait queue make it safe to expose (docs/serve.md).
"""
from aaflow_core.serve.app import STATS, create_app
from aaflow_core.serve.auth import ApiKeys, load_keys
from aaflow_core.serve.backends import (
    ChatBackend, ChatRequest, ChatResult, EchoChat, EmbeddingsBackend, HashEmbeddings, ModelEmbeddings,
)
from aaflow_core.serve.limits import ServeLimits, ServerStats
from aaflow_core.serve.thread import ServerThread

__all__ = [
    "STATS", "ApiKeys", "ChatBackend", "ChatRequest", "ChatResult", "EchoChat", "EmbeddingsBackend", "HashEmbeddings",
    "ModelEmbeddings", "ServeLimits", "ServerStats", "ServerThread", "create_app", "load_keys",
]
