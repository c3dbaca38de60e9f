"""`AAFlowRunnable(chain, checkpoint=DIR).batch(inputs)`: a batch that survives a crash and never pays twice.

Every finished input's output is committed to DIR as soon as it arrives (a writer thread puts
as many outputs per fsynced Parquet part as have arrived: group commit), as LangChain's own
JSON, keyed by the input's position and the hash of its serialisation. Calling the same batch
again returns the committed outputs revived (each was checked at commit to revive equal to
the object the run returned) and runs only the inputs that have none: failures recorded with
`return_exceptions=True` run again. A checkpoint of another chain or other inputs is refused
(CheckpointError naming the first difference) and left as it is. Under MPI each rank keeps its
shard's checkpoint in DIR/rank-R-of-N.
"""
from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from langchain_core.load import dumps
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import get_config_list

from aaflow_core.distributed import Comm
from aaflow_core.errors import CheckpointError
from aaflow_core.stores import BatchLog
from aaflow_adapters.langchain.identity import canonical, chain_form, first_difference, input_key, sha256
from aaflow_adapters.langchain.mpi import revive, type_name

CONFIG_KEY = "aaflow_checkpoint"
"""`config={"configurable": {"aaflow_checkpoint": DIR}}` checkpoints one call (overrides the field)."""
CHAIN_FILE, INPUTS_FILE = "chain.json", "inputs.json"
SCHEMA = pa.schema([
    ("index", pa.int64()),  # position in the batch (in the shard, under MPI)
    ("key", pa.string()),  # sha256 of the input's serialisation
    ("value", pa.string()),  # LangChain JSON of the output; null for a failure
    ("error_type", pa.string()),
    ("error", pa.string()),
])
RunMissing = Callable[[list[Any], list[RunnableConfig]], Iterator[tuple[int, Any]]]


def checkpoint_dir(field: str | os.PathLike[str] | None, configs: Sequence[RunnableConfig], comm: Comm) -> Path | None:
    """Where this call checkpoints: the config key, else the field; a folder per rank under MPI."""
    given = (configs[0].get("configurable") or {}).get(CONFIG_KEY) if configs else None
    chosen = given if given is not None else field
    if chosen is None:
        return None
    path = Path(chosen)
    return path / f"rank-{comm.rank}-of-{comm.size}" if comm.size > 1 else path


def _encode(index: int, key: str, out: Any) -> tuple[int, str, str | None, str | None, str | None]:
    if isinstance(out, Exception):
        return index, key, None, type_name(out), str(out)
    try:
        text = dumps(out)
        same = revive(text) == out
    except Exception as exc:  # the serialiser's own complaint, against the input
        raise CheckpointError(f"input {index}: its output ({type(out).__name__}) cannot be checkpointed as "
                              f"LangChain JSON: {type(exc).__name__}: {exc}") from exc
    if not same:
        raise CheckpointError(f"input {index}: its output ({type(out).__name__}) does not survive LangChain JSON "
                              "unchanged (tuples, non-string dict keys, non-serialisable objects), so it cannot "
                              "be checkpointed; return LangChain-serialisable objects or JSON data")
    return index, key, text, None, None


class Committer:
    """Commits outputs on its own thread, all that have arrived in one part, so the batch never waits on fsync."""

    _STOP = object()

    def __init__(self, log: BatchLog, keys: Sequence[str]) -> None:
        self.log, self.keys = log, keys
        self.error: BaseException | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="aaflow-checkpoint", daemon=True)
        self._thread.start()

    def put(self, index: int, out: Any) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put((index, out))

    def _loop(self) -> None:
        stop = False
        while not stop:
            items = [self._queue.get()]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = items[-1] is self._STOP
            rows = [i for i in items if i is not self._STOP]
            if rows and self.error is None:
                try:
                    encoded = [_encode(i, self.keys[i], out) for i, out in rows]
                    self.log.commit(pa.Table.from_pylist([dict(zip(SCHEMA.names, r)) for r in encoded], SCHEMA))
                except BaseException as exc:  # noqa: BLE001 - carried to the batch's thread
                    self.error = exc

    def close(self) -> None:
        """Wait until everything put is durable; raises what the writer met."""
        self._queue.put(self._STOP)
        self._thread.join()
        if self.error is not None:
            raise self.error


def _refusal(err: CheckpointError, work: Path, form: Any, keys: list[str]) -> CheckpointError:
    differs = getattr(err, "differs", None)
    if differs is None:
        return err
    why = f"differs in {', '.join(differs)}"
    try:
        if "chain_sha256" in differs:
            why = "the chain differs: " + str(first_difference(json.loads((work / CHAIN_FILE).read_text()), form))
        elif "inputs_sha256" in differs or "inputs" in differs:
            old = json.loads((work / INPUTS_FILE).read_text())
            at = next((i for i, (a, b) in enumerate(zip(old, keys)) if a != b), None)
            why = (f"input {at} differs from the one the checkpoint holds" if at is not None
                   else f"the checkpoint was made for {len(old)} inputs, this call has {len(keys)}")
    except (OSError, ValueError):
        pass
    return CheckpointError(f"{work}: the checkpoint was made by another batch ({why}); it was left unchanged: "
                           "call with the same chain and inputs, or give another directory")


def open_log(work: Path, form: Any, keys: list[str]) -> BatchLog:
    """The checkpoint for this chain and these inputs, new or resumed; refuses another batch's."""
    chain_json = canonical(form)
    header = {"kind": "langchain-batch", "chain_sha256": sha256(chain_json), "inputs": len(keys),
              "inputs_sha256": sha256(canonical(keys))}
    sidecars = {CHAIN_FILE: chain_json.encode(), INPUTS_FILE: canonical(keys).encode()}
    try:
        return BatchLog(work, header, sidecars)
    except CheckpointError as err:
        raise _refusal(err, work, form, keys) from None


def committed(log: BatchLog, keys: Sequence[str]) -> dict[int, str]:
    """Index -> output JSON of every input with a committed output (a later row replaces an earlier one)."""
    done: dict[int, str] = {}
    for table in log.tables():
        cols = table.select(["index", "key", "value"]).to_pydict()
        for i, key, value in zip(cols["index"], cols["key"], cols["value"]):
            if not 0 <= i < len(keys) or key != keys[i]:
                raise CheckpointError(f"{log.work}: a part holds input {i} with another key; the checkpoint "
                                      f"is damaged (delete {log.work} to start over)")
            if value is None:
                done.pop(i, None)
            else:
                done[i] = value
    return done


def iter_checkpointed(work: Path, form: Any, inputs: Sequence[Any], configs: list[RunnableConfig],
                      run_missing: RunMissing, *, return_exceptions: bool,
                      progress: bool = False) -> Iterator[tuple[int, Any]]:
    """(index, output): committed outputs revived first, then the rest as `run_missing` finishes and commits them.

    `run_missing` returns exceptions as outputs: a failure does not stop the other inputs, whose outputs
    are paid for and kept; without `return_exceptions` the first failure (in input order) is raised at
    the end instead of being yielded."""
    keys = [input_key(v) for v in inputs]
    log = open_log(work, form, keys)
    failure: tuple[int, Exception] | None = None
    try:
        done = committed(log, keys)
        bar = _bar(len(inputs), len(done)) if progress else None
        for i in sorted(done):
            yield i, revive(done[i])
        missing = [i for i in range(len(inputs)) if i not in done]
        committer = Committer(log, keys)
        try:
            for j, out in run_missing([inputs[i] for i in missing], [configs[i] for i in missing]) if missing else ():
                committer.put(missing[j], out)
                if bar is not None:
                    bar.update(1)
                if isinstance(out, Exception) and not return_exceptions:
                    failure = min(failure or (missing[j], out), (missing[j], out), key=lambda f: f[0])
                else:
                    yield missing[j], out
        finally:
            committer.close()
            if bar is not None:
                bar.close()
    finally:
        log.close()
    if failure is not None:
        raise failure[1]


def _bar(total: int, resumed: int) -> Any:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=resumed, desc="aaflow batch", unit="input")
    bar.set_postfix(resumed=resumed, refresh=False)
    return bar


def checkpointed(runnable: Any, work: Path, inputs: Sequence[Any],
                 config: RunnableConfig | Sequence[RunnableConfig] | None, kwargs: Mapping[str, Any],
                 run_missing: RunMissing, *, return_exceptions: bool, progress: bool = False
                 ) -> Iterator[tuple[int, Any]]:
    """`AAFlowRunnable.batch_as_completed` with a checkpoint: the chain identified by its serialisation, the
    call's kwargs and its plan's steps (not the plan's resources: a resumed run may use other limits)."""
    configs = get_config_list(config, len(inputs))  # type: ignore[arg-type]
    steps = [op.name for op in runnable.plan(configs[0]).ops]
    bound: Runnable[Any, Any] = runnable.bound
    form = chain_form(bound, {**runnable.kwargs, **kwargs}, steps)
    return iter_checkpointed(work, form, inputs, configs, run_missing, return_exceptions=return_exceptions,
                             progress=progress)


def checkpointed_batch(runnable: Any, work: Path, inputs: Sequence[Any],
                       config: RunnableConfig | Sequence[RunnableConfig] | None, kwargs: Mapping[str, Any],
                       run_missing: RunMissing, *, return_exceptions: bool, progress: bool = False) -> list[Any]:
    """`AAFlowRunnable.batch` with a checkpoint: outputs in input order (see `checkpointed`)."""
    outputs: list[Any] = [None] * len(inputs)
    for i, out in checkpointed(runnable, work, inputs, config, kwargs, run_missing,
                               return_exceptions=return_exceptions, progress=progress):
        outputs[i] = out
    return outputs
