"""OpenAI-compatible HTTP serving (aiohttp): chat completions and embeddings with server-side batching.

What the tests and benchmarks talk to over real HTTP on 127.0.0.1, and what a user can point
LangChain's `ChatOpenAI`/`OpenAIEmbeddings` or LlamaIndex's OpenAI classes at.
"""
from aaflow_core.serve.app import STATS, ServerStats, create_app
from aaflow_core.serve.backends import ChatBackend, ChatRequest, ChatResult, EchoChat, EmbeddingsBackend, HashEmbeddings, ModelEmbeddings
from aaflow_core.serve.thread import ServerThread

__all__ = [
    "STATS", "ChatBackend", "ChatRequest", "ChatResult", "EchoChat", "EmbeddingsBackend", "HashEmbeddings", "ModelEmbeddings",
    "ServerStats", "ServerThread", "create_app",
]
