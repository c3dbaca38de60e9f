"""Remote calls against a real fault-injecting server on 127.0.0.1: every fault is retried, results unchanged.

Faults: 429 with Retry-After, 5xx, a stall past the client's timeout, a connection reset, a
200 with a malformed body. The remote embedder and the Generate operator's OpenAI backend
must return exactly what a fault-free run returns; after the last attempt the error names the item.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from aaflow_core.errors import RemoteCallError
from aaflow_core.operators.generate import GenerateOperator
from aaflow_core.remote.embedder import RemoteEmbedder
from aaflow_core.remote import Retries
from aaflow_core.serve import EchoChat, ServerThread, create_app
from aaflow_core.serve.backends import ChatRequest, ModelEmbeddings
from aaflow_core.serve.faults import FAULT_KINDS, Fault, script

pytestmark = pytest.mark.model

TEXTS = ["How do I parse JSON?", "Split a shell command line.", "Match file names against a pattern.",
         "Serialize a dataclass.", "Escape a string for the shell.", "Decode bytes as UTF-8."]
RETRY_AFTER_S = 0.3
TIMEOUT_S = 2.0


def fault(kind: str) -> Fault:
    return Fault(kind, status=502 if kind == "5xx" else 503, retry_after_s=RETRY_AFTER_S, stall_s=2 * TIMEOUT_S)


def policy(attempts: int = 4) -> Retries:
    return Retries(attempts=attempts, initial_s=0.01, max_s=2.0, jitter_s=0.01)


@pytest.fixture(scope="module")
def reference(embedder):
    with ServerThread(create_app(embeddings=ModelEmbeddings(threads=2))) as server:
        with RemoteEmbedder(base_url=server.base_url, model="m", batch_size=3, max_in_flight=1) as remote:
            return remote.embed(TEXTS)


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_remote_embeddings_survive_each_fault_with_identical_vectors(kind, reference):
    app = create_app(embeddings=ModelEmbeddings(threads=2))
    plan = script(app, [fault(kind), fault(kind)])
    retry = policy()
    with ServerThread(app) as server:
        with RemoteEmbedder(base_url=server.base_url, model="m", batch_size=3, max_in_flight=1,
                            timeout_s=TIMEOUT_S, retries=retry) as remote:
            vectors = remote.embed(TEXTS)
            usage = remote.usage
    assert np.array_equal(vectors, reference) and vectors.dtype == np.float32
    assert plan.seen == [kind, kind, "ok", "ok"]
    assert usage.requests == 4 and usage.retries == 2 and usage.rejections == (2 if kind == "429" else 0)


def test_after_the_last_retry_each_item_fails_by_name_and_the_rest_is_kept(reference):
    app = create_app(embeddings=ModelEmbeddings(threads=2))
    plan = script(app, [fault("5xx")] * 5)  # two calls of 3 attempts: one meets 3 faults, the other 2 and then "ok"
    with ServerThread(app) as server:
        with RemoteEmbedder(base_url=server.base_url, model="m", batch_size=3, max_in_flight=1,
                            retries=policy(attempts=3)) as remote:
            results = remote.embed(TEXTS, return_exceptions=True)
    assert sorted(plan.seen) == ["5xx"] * 5 + ["ok"]
    failed = [i for i, r in enumerate(results) if isinstance(r, RemoteCallError)]
    assert failed in ([0, 1, 2], [3, 4, 5])  # a retry yields its slot while it backs off: either call may meet them
    assert all(results[i].attempts == 3 for i in failed)
    assert [results[i].item for i in failed] == [f"text {TEXTS[i][:60]!r}" for i in failed]
    kept = [i for i in range(len(TEXTS)) if i not in failed]
    assert np.array_equal(np.stack([results[i] for i in kept]), reference[kept])


def test_without_return_exceptions_the_first_failed_item_is_named(reference):
    app = create_app(embeddings=ModelEmbeddings(threads=2))
    script(app, [fault("5xx")] * 4)  # both calls fail; the error names the first item
    with ServerThread(app) as server:
        with RemoteEmbedder(base_url=server.base_url, model="m", batch_size=3, max_in_flight=1,
                            retries=policy(attempts=2)) as remote:
            with pytest.raises(RemoteCallError, match="text 'How do I parse JSON[?]' .*: failed after 2 attempt.*502"):
                remote.embed(TEXTS)


def echo_batch(questions: list[str]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({"qid": pa.array(range(len(questions)), pa.int64()),
                                       "question": questions, "contexts": [["ctx"]] * len(questions)})


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_generate_openai_backend_survives_each_fault(kind):
    app = create_app(chat=EchoChat())
    plan = script(app, [fault(kind), fault(kind)], path_suffix="/chat/completions")
    with ServerThread(app) as server:
        op = GenerateOperator(backend="openai", base_url=server.base_url, template="{question} {context}",
                              max_new_tokens=64, max_in_flight=1, attempts=4, timeout_s=TIMEOUT_S)
        op.open()
        try:
            batch = echo_batch(TEXTS[:3])
            answers = op.process(batch).column("answer").to_pylist()
        finally:
            op.close()
    expected = [EchoChat().answer(ChatRequest("m", c, 64)).content for c in op.conversations(batch)]
    assert answers == expected
    assert plan.seen == [kind, kind, "ok", "ok", "ok"] and op.usage.requests == 5 and op.usage.retries == 2
