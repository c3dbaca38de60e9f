"""Async micro-batching and event-loop plumbing shared by operators and the runtime."""
from aaflow_core.concurrency.batcher import (
    AsyncBatcher, BatcherStats, BatchPolicy, LoopThread, RetryPolicy, is_retryable,
)

__all__ = ["AsyncBatcher", "BatchPolicy", "BatcherStats", "LoopThread", "RetryPolicy", "is_retryable"]
