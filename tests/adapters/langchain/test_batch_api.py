"""remote="batch-api": a chain's model calls through OpenAI's Batch API (a loopback server), same outputs."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_openai import ChatOpenAI

from aaflow_adapters.langchain import AAFlowRunnable
from aaflow_core.remote.batches import BatchLimits
from aaflow_core.serve import STATS, EchoChat, ServerThread, create_app
from aaflow_core.serve.batch_api import add_batch_api

PROGS = Path(__file__).parent / "progs"
FAST = BatchLimits(max_requests=40, poll_s=0.05, max_poll_s=0.1)
INPUTS = [{"q": f"question number {i} about batches"} for i in range(100)]


def serve(**options):
    app = create_app(chat=EchoChat())
    service = add_batch_api(app, EchoChat(), **options)
    return ServerThread(app), service


def one_model(url: str):
    return ChatPromptTemplate.from_template("Q: {q}") | ChatOpenAI(base_url=url, api_key="k", model="m") | StrOutputParser()


def two_models(url: str):
    second = ChatPromptTemplate.from_template("Again: {a}") | ChatOpenAI(base_url=url, api_key="k", model="m2")
    return one_model(url) | RunnableLambda(lambda a: {"a": a}) | second | StrOutputParser()


@pytest.mark.parametrize("build, steps", [(one_model, 1), (two_models, 2)])
def test_batch_mode_equals_the_synchronous_path_with_one_job_per_model_step(build, steps):
    server, service = serve(processing_s=0.1, fail=lambda cid: cid.endswith("7"))
    with server:
        chain = build(server.base_url)
        stock = chain.batch(INPUTS, {"max_concurrency": 16})
        sync_requests = server.app[STATS].requests
        runnable = AAFlowRunnable(chain, remote="batch-api", batch_limits=FAST)
        assert runnable.batch(INPUTS) == stock
        usage = runnable.last_batch_usage
    files_per_step = math.ceil(len(INPUTS) / FAST.max_requests)
    assert service.stats.uploads == service.stats.batches == steps * files_per_step
    failed = steps * sum(1 for k in range(len(INPUTS)) if str(k).zfill(6).endswith("7"))
    assert usage.sync_requests == failed == server.app[STATS].requests - sync_requests  # failed lines, retried
    assert usage.batch_requests == steps * len(INPUTS) - failed and service.stats.lines == steps * len(INPUTS)
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0


def test_abatch_and_return_exceptions_report_what_the_batch_could_not_do(tmp_path):
    server, service = serve(processing_s=0.0)
    with server:
        chain = one_model(server.base_url)
        want = chain.batch(INPUTS[:10])
        runnable = AAFlowRunnable(chain, remote="batch-api", batch_limits=FAST)
        import asyncio

        assert asyncio.run(runnable.abatch(INPUTS[:10])) == want
        broken = AAFlowRunnable(one_model(server.base_url.replace("/v1", "/nowhere")), remote="batch-api",
                                batch_limits=FAST)
        out = broken.batch(INPUTS[:3], return_exceptions=True)
    assert all(isinstance(o, Exception) and "404" in str(o) for o in out)


def batch_recorded(ledger: Path) -> bool:
    """Whether the ledger holds a batch id: the point after which a killed run must not upload again."""
    for record in ledger.rglob("*.json") if ledger.exists() else ():
        try:
            if "batch_id" in record.read_text():
                return True
        except FileNotFoundError:  # a temporary file renamed into place meanwhile
            continue
    return False


def test_a_process_killed_while_polling_resumes_the_same_batches(tmp_path):
    server, service = serve(processing_s=4.0)
    n = 60
    with server:
        want = one_model(server.base_url).batch([{"q": f"question {i}"} for i in range(n)])
        before = server.app[STATS].requests
        args = [sys.executable, str(PROGS / "batch_api_run.py"), server.base_url, str(tmp_path / "jobs"), str(n)]
        first = subprocess.Popen([*args, str(tmp_path / "first.json")])
        deadline = time.monotonic() + 120
        while not batch_recorded(tmp_path / "jobs") and time.monotonic() < deadline:
            time.sleep(0.05)  # the server counts a batch before the client has written its id to the ledger
        assert service.stats.batches == 1 and first.poll() is None
        first.kill()
        first.wait()
        done = subprocess.run([*args, str(tmp_path / "second.json")], timeout=180, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "second.json").read_text())
    assert result["outputs"] == want
    assert service.stats.uploads == service.stats.batches == 1  # the rerun polled the batch the killed run made
    assert result["usage"]["jobs"]["resumed"] == 1 and result["usage"]["jobs"]["batches"] == 0
    assert server.app[STATS].requests == before  # nothing sent synchronously
