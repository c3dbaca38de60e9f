"""Constructors for the built-in operator specs (plain data; the runtime binds them)."""
from __future__ import annotations

from aaflow_core.errors import ConfigError
from aaflow_core.models.llm import DEFAULT_TEMPLATE, check_template
from aaflow_core.models.modes import check_mode
from aaflow_core.plan.data import OpSpec

TEXT_SUFFIXES = (".txt", ".md", ".rst", ".py", ".html")


def load(*, max_file_bytes: int = 64 * 2**20, name: str = "load") -> OpSpec:
    if max_file_bytes < 1:
        raise ConfigError("max_file_bytes", max_file_bytes, "must be >= 1")
    return OpSpec.make("load", name, max_file_bytes=max_file_bytes)


def chunk(*, chunk_size: int = 1000, chunk_overlap: int = 100, name: str = "chunk") -> OpSpec:
    if chunk_size < 1:
        raise ConfigError("chunk_size", chunk_size, "must be >= 1")
    if chunk_overlap < 0 or chunk_overlap >= chunk_size:
        raise ConfigError("chunk_overlap", chunk_overlap, f"must be >= 0 and < chunk_size ({chunk_size})")
    return OpSpec.make("chunk", name, chunk_size=chunk_size, chunk_overlap=chunk_overlap)


def embed(
    *, model: str | None = None, window: int = 256, encode_batch_size: int = 32, name: str = "embed",
    precision: str = "fp32", backend: str = "torch", endpoint: str | None = None, rpm: float | None = None,
    tpm: float | None = None,
) -> OpSpec:
    """`window` rows are length-sorted together and encoded `encode_batch_size` at a time.

    `precision` (fp32|bf16|int8) and `backend` (torch|onnx) are part of the plan, so they enter
    its fingerprint; the mode that actually ran (after any bf16 fallback) is in the manifest.
    With `endpoint` (an OpenAI-compatible base URL) `model` names the remote model and every
    window's requests go through `aaflow_core.remote` within `rpm`/`tpm` (the key stays out of the plan).
    """
    check_mode(precision, backend)
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigError("endpoint", endpoint, "must be an http:// or https:// URL")
    if endpoint is not None and not model:
        raise ConfigError("model", model, "name the remote embedding model (--embed-model)")
    for field, value in (("rpm", rpm), ("tpm", tpm)):
        if value is not None and value <= 0:
            raise ConfigError(field, value, "must be > 0")
    if encode_batch_size < 1:
        raise ConfigError("batch_size", encode_batch_size, "must be >= 1")
    if window < encode_batch_size:
        raise ConfigError("window", window, f"must be >= batch size ({encode_batch_size})")
    return OpSpec.make(
        "embed", name, batch_size=window, model=model, encode_batch_size=encode_batch_size, precision=precision,
        backend=backend, **({"endpoint": endpoint, "rpm": rpm, "tpm": tpm} if endpoint is not None else {}),
    )


def upsert(*, index_dir: str, name: str = "upsert") -> OpSpec:
    return OpSpec.make("upsert", name, index_dir=index_dir)


def map_batches(fn_key: str, *, name: str = "map", batch_size: int | None = None, workers: int = 1) -> OpSpec:
    """A user function, registered with the Workflow under `fn_key`."""
    return OpSpec.make("map", name, batch_size=batch_size, workers=workers, fn=fn_key)


def generate(
    *, backend: str = "local", model: str | None = None, base_url: str | None = None, template: str = DEFAULT_TEMPLATE,
    max_new_tokens: int = 64, max_in_flight: int = 8, attempts: int = 5, name: str = "generate",
) -> OpSpec:
    """Answer each (question, contexts) row; the API key is read from the environment, never planned."""
    if backend not in ("local", "openai"):
        raise ConfigError("backend", backend, "must be 'local' or 'openai'")
    for field, value in (("max_new_tokens", max_new_tokens), ("max_in_flight", max_in_flight), ("attempts", attempts)):
        if value < 1:
            raise ConfigError(field, value, "must be >= 1")
    return OpSpec.make("generate", name, backend=backend, model=model, base_url=base_url,
                       template=check_template(template), max_new_tokens=max_new_tokens,
                       max_in_flight=max_in_flight, attempts=attempts)
