"""One split worker process (see splitpool.py): rebuilds each SentenceSplitter config once, splits texts in order.

Run as a file by splitpool (`runpy.run_path`), so it imports llama-index-core, tiktoken and
pyarrow only. Requests and answers are Arrow IPC streams on stdin/stdout; the first answer is
an empty batch that says the worker is ready.
"""
from __future__ import annotations

import json
import os
import sys
from functools import lru_cache, partial

import pyarrow as pa
import tiktoken
from llama_index.core.node_parser import SentenceSplitter

ANSWER = pa.schema([("splits", pa.list_(pa.large_string())), ("error", pa.string())])


@lru_cache(maxsize=8)
def build(config: str) -> SentenceSplitter:
    settings = json.loads(config)
    import llama_index.core

    # where llama-index-core's get_tokenizer looks when the user set nothing (offline: its bundled files)
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", os.path.join(os.path.dirname(llama_index.core.__file__),
                                                             "_static", "tiktoken_cache"))
    enc = tiktoken.get_encoding(settings.pop("encoding"))
    return SentenceSplitter(tokenizer=partial(enc.encode, allowed_special="all"), **settings)


def main() -> None:
    """Worker: rebuild each config's SentenceSplitter once, answer every request batch in order."""
    answers = os.fdopen(os.dup(1), "wb")  # the IPC stream; anything a library prints goes to stderr
    os.dup2(2, 1)
    out = pa.ipc.new_stream(answers, ANSWER)
    build(json.dumps({"chunk_size": 8, "chunk_overlap": 0, "encoding": "cl100k_base"})).split_text(
        "Warm up: nltk's punkt and tiktoken load here. Then the worker says it is ready.")
    out.write_batch(pa.record_batch([pa.array([], pa.list_(pa.large_string())), pa.array([], pa.string())],
                                    schema=ANSWER))
    answers.flush()
    try:
        requests = pa.ipc.open_stream(sys.stdin.buffer)
    except (pa.ArrowInvalid, EOFError):  # the parent went away before sending anything
        return
    for batch in requests:
        splits: list[list[str] | None] = []
        errors: list[str | None] = []
        for config, text, meta in zip(*(batch.column(i).to_pylist() for i in range(3))):
            try:
                splits.append(build(config).split_text_metadata_aware(text, meta))
                errors.append(None)
            except Exception as exc:  # stock's error is raised by the parent, splitting this text itself
                splits.append(None)
                errors.append(f"{type(exc).__name__}: {exc}")
        out.write_batch(pa.record_batch([pa.array(splits, pa.list_(pa.large_string())), pa.array(errors, pa.string())],
                                        schema=ANSWER))
        answers.flush()


if __name__ == "__main__":
    main()
