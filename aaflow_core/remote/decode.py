"""Response bodies to results, and payloads to token estimates: pure functions, no I/O.

Embeddings arrive base64 (little-endian float32, as the openai client asks for them) and are
decoded straight into one contiguous float32 matrix: the buffer an Arrow
`fixed_size_list<float32>` column wraps without a copy, never a list of Python floats.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from aaflow_core.errors import MalformedResponseError

CHARS_PER_TOKEN = 4.0  # the usual English estimate; corrected from `usage` after each answer


def decode_embeddings(body: Any, count: int) -> np.ndarray:
    """A (count, dim) float32 matrix, rows in `index` order; MalformedResponseError saying why not."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or len(data) != count:
        got = f"{len(data)} items" if isinstance(data, list) else type(data).__name__
        raise MalformedResponseError(f"expected {count} embeddings, got {got}")
    try:
        items = sorted(data, key=lambda d: d["index"])
        rows = [item["embedding"] for item in items]
    except (KeyError, TypeError) as exc:
        raise MalformedResponseError(f"embedding item without index/embedding: {exc}") from None
    if all(isinstance(r, str) for r in rows):
        return _from_base64(rows)
    try:  # a server that ignored encoding_format: numbers, which were float32 to begin with
        matrix = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise MalformedResponseError(f"embeddings are neither base64 nor numbers: {exc}") from None
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise MalformedResponseError("embeddings differ in length or are empty")
    return matrix


def _from_base64(rows: list[str]) -> np.ndarray:
    try:
        raw = [base64.b64decode(r, validate=True) for r in rows]
    except (binascii.Error, ValueError) as exc:
        raise MalformedResponseError(f"embedding is not base64: {exc}") from None
    width = len(raw[0])
    if not width or width % 4 or any(len(r) != width for r in raw):
        raise MalformedResponseError("embeddings differ in length or are not float32")
    out = np.empty((len(raw), width // 4), dtype=np.float32)
    flat = out.reshape(-1).view(np.uint8)
    for i, r in enumerate(raw):
        flat[i * width:(i + 1) * width] = np.frombuffer(r, dtype=np.uint8)
    if out.dtype.byteorder == ">":  # pragma: no cover - big-endian hosts
        out.byteswap(inplace=True)
    return out


def check_chat(body: Any) -> dict[str, Any]:
    """A chat-completions body with at least one choice carrying a message, or MalformedResponseError."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not all(isinstance(c, dict) and "message" in c for c in choices):
        raise MalformedResponseError("chat response without choices[].message")
    return body


def estimate_tokens(payload: dict[str, Any]) -> float:
    """Prompt characters / 4 plus the completion budget: what a tokens-per-minute limit charges up front."""
    chars = 0
    for message in payload.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
    inputs = payload.get("input")
    if isinstance(inputs, str):
        chars += len(inputs)
    elif isinstance(inputs, list):
        chars += sum(len(t) for t in inputs if isinstance(t, str))
    completion = payload.get("max_completion_tokens") or payload.get("max_tokens") or 0
    return max(1.0, chars / CHARS_PER_TOKEN + (completion if isinstance(completion, int) else 0))
