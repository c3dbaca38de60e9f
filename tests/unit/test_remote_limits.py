"""The remote layer's pure parts: header parsing, token buckets, header budgets, the adaptive window."""
from __future__ import annotations

import asyncio
import base64

import numpy as np
import pytest

from aaflow_core.errors import ConfigError, MalformedResponseError
from aaflow_core.remote import Endpoint, Limiter, Limits, decode_embeddings, estimate_tokens, parse_duration_s, retry_after_s
from aaflow_core.remote.limiter import HeaderBudget, TokenBucket


@pytest.mark.parametrize("text,seconds", [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1.5", 1.5),
                                          ("1h2m3s", 3723.0), ("", None), ("soon", None), ("3sx", None)])
def test_durations_as_hosted_apis_write_them(text, seconds):
    assert parse_duration_s(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_retry_after_ms_wins_over_retry_after():
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "1"}) == 0.25
    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after_s({}) is None


def test_token_bucket_waits_for_what_it_lacks_and_takes_corrections():
    bucket = TokenBucket(rate=10.0, capacity=5.0)
    now = bucket.stamp
    assert bucket.wait_s(now, 5) == 0.0
    bucket.take(5)
    assert bucket.wait_s(now, 2) == pytest.approx(0.2)
    bucket.adjust(-3)  # the request cost 3 fewer than estimated
    assert bucket.wait_s(now, 2) == 0.0
    assert bucket.wait_s(now, 50) > 0  # a cost above capacity waits for a full bucket, never forever
    bucket.level = bucket.capacity
    assert bucket.wait_s(now, 50) == 0.0


def test_header_budget_subtracts_what_was_sent_after_the_answered_request():
    budget = HeaderBudget()
    marks = [budget.take(1) for _ in range(3)]  # three requests out; the first answers
    budget.update(100.0, "2", "500ms", marks[0], 1)
    assert budget.remaining == 0  # the server counted the first only; two more are on their way
    assert budget.wait_s(100.1, 1) == pytest.approx(0.4)
    assert budget.wait_s(100.6, 1) == 0.0 and budget.remaining is None  # reset passed: unknown again


def test_window_halves_on_429_grows_after_and_pauses_for_retry_after():
    async def go() -> Limiter:
        limiter = Limiter(Limits(max_in_flight=8, initial_in_flight=8))
        tickets = [await limiter.acquire(1) for _ in range(8)]
        assert limiter.in_flight == 8
        limiter.release(tickets[0], headers={"retry-after-ms": "30"}, status=429)
        assert limiter.window == 4 and limiter.paused_until > 0
        limiter.release(tickets[1], headers={}, status=429)  # the same congestion event: no second cut
        assert limiter.window == 4
        for t in tickets[2:]:
            limiter.release(t, headers={}, status=200)
        assert 4 < limiter.window < 6  # additive growth after the first 429
        await limiter.acquire(1)  # waits out the pause, then goes
        return limiter

    assert asyncio.run(go()).in_flight == 1


def test_in_flight_never_exceeds_the_window():
    async def go() -> int:
        limiter = Limiter(Limits(max_in_flight=3, initial_in_flight=3))
        seen = 0

        async def one() -> None:
            nonlocal seen
            ticket = await limiter.acquire(1)
            seen = max(seen, limiter.in_flight)
            await asyncio.sleep(0)
            limiter.release(ticket, headers=None, status=200)

        await asyncio.gather(*(one() for _ in range(20)))
        return seen

    assert asyncio.run(go()) == 3


def test_base64_embeddings_decode_to_one_float32_matrix_in_index_order():
    rows = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    data = [{"index": i, "embedding": base64.b64encode(r.astype("<f4").tobytes()).decode()} for i, r in enumerate(rows)]
    out = decode_embeddings({"data": data[::-1]}, 3)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rows)
    with pytest.raises(MalformedResponseError):
        decode_embeddings({"data": data[:2]}, 3)
    with pytest.raises(MalformedResponseError):
        decode_embeddings({"data": [{"index": 0, "embedding": "not base64!"}]}, 1)


def test_token_estimates_count_prompt_and_completion_budget():
    chat = {"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 50}
    assert estimate_tokens(chat) == 150
    assert estimate_tokens({"input": ["abcd"] * 10}) == 10


def test_endpoint_is_validated_once_and_keys_share_by_url_key_and_headers():
    with pytest.raises(ConfigError):
        Endpoint("localhost:8000")
    with pytest.raises(ConfigError):
        Limits(max_in_flight=0)
    a = Endpoint.of("http://127.0.0.1:1/v1/", api_key="k", headers={"X": "1"})
    assert a.base_url == "http://127.0.0.1:1/v1"
    assert a.key == Endpoint.of("http://127.0.0.1:1/v1", api_key="k", headers={"X": "1"}).key
    assert a.key != Endpoint.of("http://127.0.0.1:1/v1", api_key="other", headers={"X": "1"}).key
    assert "k" not in repr(a) and a.request_headers()["Authorization"] == "Bearer k"


def test_reconfigure_applies_new_limits_and_keeps_what_the_server_taught():
    async def go() -> None:
        limiter = Limiter(Limits(max_in_flight=4, initial_in_flight=2, rpm=60))
        assert limiter.window == 2 and limiter.rpm is not None
        limiter.reconfigure(Limits(max_in_flight=16, initial_in_flight=12))  # no 429 yet: start at the new start
        assert limiter.window == 12 and limiter.rpm is None
        tickets = [await limiter.acquire(1) for _ in range(12)]  # the new window admits 12 at once
        limiter.release(tickets[0], headers={}, status=429)
        assert limiter.window == 6
        limiter.reconfigure(Limits(max_in_flight=32, initial_in_flight=32, tpm=1000))
        assert limiter.window == 6 and limiter.tpm is not None  # a learned window stays; new buckets apply
        limiter.reconfigure(Limits(max_in_flight=3))
        assert limiter.window == 3  # never above the new ceiling

    asyncio.run(go())


def test_backoff_follows_the_servers_word_then_grows_exponentially():
    from aaflow_core.errors import EndpointError
    from aaflow_core.remote.client import backoff_s
    from aaflow_core.remote import Retries

    policy = Retries(initial_s=0.1, max_s=1.0, jitter_s=0.01)
    assert backoff_s(policy, EndpointError(429, "slow down", retryable=True, retry_after_s=5.0), 1) == 0.0
    assert backoff_s(policy, EndpointError(503, "busy", retryable=True, retry_after_s=5.0), 1) == 1.0
    assert 0.1 <= backoff_s(policy, EndpointError(502, "bad gateway", retryable=True), 1) <= 0.11
    assert 0.4 <= backoff_s(policy, MalformedResponseError("truncated"), 3) <= 0.41
    assert backoff_s(policy, EndpointError(None, "reset", retryable=True), 10) == 1.0


def test_relaxed_gc_is_shared_by_holders_and_restores_what_was_there():
    import gc

    from aaflow_core.remote import gcpolicy, relaxed_gc

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with relaxed_gc():
            assert gc.get_threshold() == (gcpolicy.RELAXED_GEN0, 10, 10)
            gcpolicy.hold()  # a second, overlapping holder (another batch on another thread)
        assert gc.get_threshold()[0] == gcpolicy.RELAXED_GEN0  # still held by the second
        gcpolicy.release()
        assert gc.get_threshold() == (700, 10, 10)
        gcpolicy.release()  # an extra release is harmless
        with relaxed_gc():
            gc.set_threshold(1234, 5, 5)  # the process changed it meanwhile: its choice stays
        assert gc.get_threshold() == (1234, 5, 5)
        gc.set_threshold(0, 10, 10)  # collection off: left off
        with relaxed_gc():
            assert gc.get_threshold() == (0, 10, 10)
    finally:
        gc.set_threshold(*before)
