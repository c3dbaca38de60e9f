"""Remote model calls: the one place aaflow talks HTTP to OpenAI-compatible model services.

Usage (from any event loop, from aaflow's loop threads, or from plain synchronous code)::

    from aaflow_core.remote import Endpoint, Limits, shared_client

    ep = Endpoint.of("http://127.0.0.1:8000/v1", api_key="sk-...",      # key from OPENAI_API_KEY if None
                     headers={"X-Team": "a"}, timeout_s=60.0,
                     limits=Limits(max_in_flight=256, rpm=3000, tpm=1_000_000))
    client = shared_client()                      # process-wide: one session + limiter per endpoint

    body: dict = await client.chat(ep, {"model": "gpt-4o-mini", "messages": [...]})   # response JSON
    vecs: np.ndarray = await client.embed(ep, {"model": "text-embedding-3-small", "input": ["a", "b"]})
    vecs = await client.embed_texts(ep, texts, model="m", batch_size=16)   # all batches, input order
    body = client.run(client.chat(ep, payload))   # the same from synchronous code

    client.usage(ep)   # {base_url: Usage(requests, retries, rejections, errors, failed,
                       #                   prompt_tokens, completion_tokens)}

Every call waits for the endpoint's limiter (adaptive in-flight window, rpm/tpm token buckets,
the server's `x-ratelimit-*` and `retry-after(-ms)` headers) and the client's shared in-flight
budget, then retries 429, 5xx, timeouts, resets and malformed bodies with the same request
bytes. After the last retry it raises `RemoteCallError` naming the item (the `item=` label, or
the payload's start); 400/401/404 are not retried. `openai_error(err)` gives the exception the
openai client would have raised instead (`openai.AuthenticationError`, ...), for adapters that
must raise stock's types. `embed` asks for base64 and returns one
contiguous float32 matrix (`dataplane.views.embedding_column` wraps it as Arrow without a copy).
Endpoints with the same URL, key and headers share a session, limiter and usage record; each
call's timeout and retries are its own, and the limiter takes the latest call's `Limits` (see
`Limiter.reconfigure`). The in-flight window starts at 64 (or `max_in_flight` if lower) and grows
on success; give `Limits(initial_in_flight=N)` to send N at once from the start.
`client.loop()` is the event loop the sessions live on: coroutines run there skip a thread hop.
`with relaxed_gc(): ...` (or `hold_relaxed_gc()` ... `release_relaxed_gc()`) around a batch with many requests in flight spares the garbage collector
traversing the same surviving objects over and over (see gcpolicy.py).
"""
from aaflow_core.errors import EndpointError, MalformedResponseError, RemoteCallError
from aaflow_core.remote.batches import BatchJobs, BatchLimits, BatchUsage
from aaflow_core.remote.client import RemoteClient, shared_client
from aaflow_core.remote.compat import openai_error
from aaflow_core.remote.config import Endpoint, Limits, Retries
from aaflow_core.remote.decode import decode_embeddings, estimate_tokens
from aaflow_core.remote.gcpolicy import hold as hold_relaxed_gc
from aaflow_core.remote.gcpolicy import relaxed_gc
from aaflow_core.remote.gcpolicy import release as release_relaxed_gc
from aaflow_core.remote.limiter import Limiter, parse_duration_s, retry_after_s
from aaflow_core.remote.usage import Usage

__all__ = [
    "BatchJobs", "BatchLimits", "BatchUsage", "Endpoint", "EndpointError", "Limiter", "Limits", "MalformedResponseError", "RemoteCallError", "RemoteClient",
    "Retries", "Usage", "decode_embeddings", "estimate_tokens", "hold_relaxed_gc", "openai_error", "parse_duration_s",
    "relaxed_gc", "release_relaxed_gc", "retry_after_s", "shared_client",
]
