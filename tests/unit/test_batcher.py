"""The async batcher: ordering, batch composition, in-flight caps, retries, errors naming items."""
from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aaflow_core.concurrency import AsyncBatcher, BatchPolicy, LoopThread, RetryPolicy
from aaflow_core.errors import ConfigError, RemoteCallError

FAST = RetryPolicy(attempts=3, initial_s=0.0, max_s=0.0, jitter_s=0.0)


class Status(Exception):
    def __init__(self, status_code: int, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.retry_after = retry_after


def run(coro):
    return asyncio.run(coro)


def test_results_follow_input_order_whatever_finishes_first():
    rng = random.Random(7)

    async def slow_square(items: list[int]) -> list[int]:
        await asyncio.sleep(rng.random() / 200)
        return [i * i for i in items]

    batcher = AsyncBatcher(slow_square, BatchPolicy(max_batch_size=3, max_in_flight=8), FAST)
    assert run(batcher.map(range(50))) == [i * i for i in range(50)]


def test_without_deadline_calls_are_consecutive_full_slices():
    async def ident(items: list[int]) -> list[int]:
        return items

    batcher = AsyncBatcher(ident, BatchPolicy(max_batch_size=4), FAST)
    run(batcher.map(range(10)))
    assert batcher.stats.batch_sizes == [4, 4, 2]


def test_in_flight_calls_never_exceed_the_cap():
    async def wait(items: list[int]) -> list[int]:
        await asyncio.sleep(0.005)
        return items

    batcher = AsyncBatcher(wait, BatchPolicy(max_batch_size=1, max_in_flight=3), FAST)
    run(batcher.map(range(30)))
    assert batcher.stats.max_in_flight_seen == 3
    assert batcher.stats.calls == 30


def test_deadline_flushes_a_short_batch():
    async def ident(items: list[int]) -> list[int]:
        return items

    async def main() -> list[int]:
        batcher = AsyncBatcher(ident, BatchPolicy(max_batch_size=100, max_wait_ms=5), FAST)
        got = await asyncio.gather(batcher.submit(1), batcher.submit(2))
        return [*got, batcher.stats.calls]

    assert run(main()) == [1, 2, 1]


def test_429_then_success_is_retried_honouring_retry_after():
    attempts = []

    async def flaky(items: list[str]) -> list[str]:
        attempts.append(len(items))
        if len(attempts) == 1:
            raise Status(429, retry_after=0.01)
        return [s.upper() for s in items]

    batcher = AsyncBatcher(flaky, BatchPolicy(max_batch_size=2), FAST)
    assert run(batcher.map(["a", "b"])) == ["A", "B"]
    assert attempts == [2, 2]


def test_client_errors_are_not_retried_and_name_each_item():
    async def reject(items: list[str]) -> list[str]:
        raise Status(400)

    batcher = AsyncBatcher(reject, BatchPolicy(max_batch_size=2), FAST, describe=lambda s: f"doc:{s}")
    out = run(batcher.map(["x", "y", "z"], return_exceptions=True))
    assert [type(e) for e in out] == [RemoteCallError] * 3
    assert [e.item for e in out] == ["doc:x", "doc:y", "doc:z"]
    assert batcher.stats.attempts == 2  # two calls, one attempt each


def test_persistent_5xx_fails_after_the_last_attempt():
    async def down(items: list[int]) -> list[int]:
        raise Status(503)

    batcher = AsyncBatcher(down, BatchPolicy(max_batch_size=5), FAST)
    with pytest.raises(RemoteCallError, match="after 3 attempt"):
        run(batcher.map([1, 2]))


def test_failure_of_one_call_keeps_results_of_the_others():
    async def picky(items: list[int]) -> list[int]:
        if 3 in items:
            raise Status(400)
        return items

    batcher = AsyncBatcher(picky, BatchPolicy(max_batch_size=2), FAST)
    out = run(batcher.map(range(6), return_exceptions=True))
    assert out[:2] == [0, 1] and out[4:] == [4, 5]
    assert all(isinstance(e, RemoteCallError) for e in out[2:4])


def test_wrong_number_of_results_is_an_error():
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    batcher = AsyncBatcher(short, BatchPolicy(max_batch_size=3), RetryPolicy(attempts=1))
    with pytest.raises(RemoteCallError, match="2 results for 3 items"):
        run(batcher.map([1, 2, 3]))


def test_loop_thread_drives_a_batcher_from_sync_code():
    async def double(items: list[int]) -> list[int]:
        return [2 * i for i in items]

    with LoopThread() as loop:
        assert loop.run(AsyncBatcher(double, BatchPolicy(max_batch_size=2)).map([1, 2, 3])) == [2, 4, 6]


@pytest.mark.parametrize("kwargs", [{"max_batch_size": 0}, {"max_in_flight": 0}, {"max_wait_ms": -1}])
def test_bad_policy_values_are_rejected(kwargs):
    with pytest.raises(ConfigError):
        BatchPolicy(**kwargs)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 60),
    size=st.integers(1, 9),
    in_flight=st.integers(1, 6),
    wait=st.one_of(st.none(), st.floats(0, 2)),
    delays=st.lists(st.floats(0, 0.002), min_size=1, max_size=8),
)
def test_any_batching_gives_the_same_ordered_results(n, size, in_flight, wait, delays):
    calls = iter(range(10**6))

    async def negate(items: list[int]) -> list[int]:
        await asyncio.sleep(delays[next(calls) % len(delays)])
        return [-i for i in items]

    batcher = AsyncBatcher(negate, BatchPolicy(size, wait, in_flight), FAST)
    assert run(batcher.map(range(n))) == [-i for i in range(n)]
    assert all(s <= size for s in batcher.stats.batch_sizes)
    assert batcher.stats.max_in_flight_seen <= in_flight
