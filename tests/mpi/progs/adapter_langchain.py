"""Run under `mpiexec -n 2`: `AAFlowRunnable(chain).batch` spread over the ranks, next to stock `batch`.

argv: WORK [kill]. Every rank runs the same script (SPMD) and writes WORK/lc-<rank>.json with
what it saw. With `kill`, rank 1 kills itself (SIGKILL) inside the batch instead.
"""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from adapter_support import count_pickles, write_report
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from aaflow_adapters.langchain import AAFlowRunnable
from aaflow_adapters.langchain.mpi import RemoteRankError
from aaflow_core.distributed import Comm
from aaflow_core.errors import RankError

INPUTS = [{"q": f"question {i}"} for i in range(7)]  # rank 0 runs 0-3, rank 1 runs 4-6
prompt = ChatPromptTemplate.from_template("Q: {q}")
messages = prompt | ParrotFakeChatModel()
answers = messages | RunnableLambda(lambda m: {"text": m.content.upper(), "words": len(m.content.split())})


def number(x: dict) -> int:
    return int(x["q"].split()[1])


class Roots(BaseCallbackHandler):
    """Records the input of every root chain run this process saw."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_chain_start(self, serialized: Any, inputs: Any, *, parent_run_id: Any = None, **kwargs: Any) -> None:
        if parent_run_id is None:
            self.seen.append(number(inputs))


def fail_on(*which: int) -> RunnableLambda:
    def step(x: dict) -> dict:
        if number(x) in which:
            raise ValueError(f"bad input {number(x)}")
        return x
    return RunnableLambda(step)


def error_of(call: Any) -> dict:
    try:
        call()
    except RankError as exc:
        return {"type": type(exc).__name__, "rank": exc.rank, "message": str(exc)}
    return {"type": None}


def plain(message: Any) -> dict:
    return {"type": type(message).__name__, **message.model_dump(exclude={"id"})}


def main(work: str) -> None:
    comm = Comm.world()
    pickles = count_pickles()
    stock = answers.batch(INPUTS)
    roots = Roots()
    ours = AAFlowRunnable(answers).batch(INPUTS, config={"callbacks": [roots]})
    excs = AAFlowRunnable(fail_on(3, 5) | answers).batch(INPUTS, return_exceptions=True)
    report = {
        "size": comm.size,
        "answers": ours,
        "answers_equal_stock": ours == stock,
        "messages_equal_stock": [plain(m) for m in AAFlowRunnable(messages).batch(INPUTS)]
        == [plain(m) for m in messages.batch(INPUTS)],
        "abatch_equal_stock": asyncio.run(AAFlowRunnable(answers).abatch(INPUTS)) == stock,
        "as_completed_equal_stock": sorted(AAFlowRunnable(answers).batch_as_completed(INPUTS)) == list(enumerate(stock)),
        "one_input": AAFlowRunnable(answers).batch(INPUTS[:1]) == stock[:1],
        "ranks_1_equal_stock": AAFlowRunnable(answers, ranks=1).batch(INPUTS) == stock,
        "callback_roots": roots.seen,
        "exceptions": [{"type": type(e).__name__, "str": str(e), "rank": getattr(e, "rank", None),
                        "type_name": getattr(e, "type_name", None)} if isinstance(e, Exception) else None
                       for e in excs],
        "remote_is_rank_error": [isinstance(e, RankError) for e in excs if isinstance(e, RemoteRankError)],
        "fail_fast": error_of(lambda: AAFlowRunnable(fail_on(5) | answers).batch(INPUTS)),
        "unserializable": error_of(lambda: AAFlowRunnable(
            answers | RunnableLambda(lambda x: (x["text"],) if x["text"].endswith("4") else x)).batch(INPUTS)),
        "pickles": dict(pickles),
    }
    write_report(work, "lc", comm.rank, report)


def kill(work: str) -> None:
    comm = Comm.world()
    print(f"rank {comm.rank} pid {os.getpid()}", flush=True)

    def die(x: dict) -> dict:
        if comm.rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    AAFlowRunnable(answers | RunnableLambda(die)).batch(INPUTS)
    print(f"rank {comm.rank} finished the batch", flush=True)


if __name__ == "__main__":
    (kill if sys.argv[2:] == ["kill"] else main)(sys.argv[1])
