"""Async micro-batching and event-loop plumbing shared by operators and the runtime."""
from aaflow_core.concurrency.batcher import (
    AsyncBatcher, BatcherStats, BatchPolicy, LoopThread, RetryPolicy, is_retryable,
)
from aaflow_core.concurrency.coroutines import drive

__all__ = ["AsyncBatcher", "BatchPolicy", "BatcherStats", "LoopThread", "RetryPolicy", "drive", "is_retryable"]
