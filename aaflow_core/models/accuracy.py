"""Accuracy of an embedding mode against the fp32 reference: vector distance and retrieval agreement.

Exact inner-product search in NumPy (the same ranking as a FAISS flat IP index over normalised
vectors), ties broken by row number, so the figures are deterministic.
"""
from __future__ import annotations

import numpy as np


def top_k(index: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(q, k) row numbers of the best inner-product matches, best first, ties by lower row."""
    scores = queries @ index.T
    k = min(k, index.shape[0])
    rows = np.broadcast_to(np.arange(index.shape[0]), scores.shape)
    return np.lexsort((rows, -scores), axis=1)[:, :k]


def recall_at_k(ref_index: np.ndarray, ref_queries: np.ndarray, index: np.ndarray, queries: np.ndarray,
                k: int = 10) -> float:
    """Mean fraction of the fp32 top-k (fp32 queries on the fp32 index) that the mode's own search returns."""
    want, got = top_k(ref_index, ref_queries, k), top_k(index, queries, k)
    hits = [len(np.intersect1d(w, g, assume_unique=True)) for w, g in zip(want, got)]
    return float(np.mean(hits) / want.shape[1])


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)  # float32 norms alone put identical rows at 0.9999999
    return np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Max absolute difference and min/mean cosine similarity, row by row."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape} vs candidate {candidate.shape}")
    cos = cosine_rows(reference, candidate)
    return {"max_abs_diff": float(np.abs(reference - candidate).max()), "min_cosine": float(cos.min()),
            "mean_cosine": float(cos.mean())}


def accuracy_report(ref_chunks: np.ndarray, chunks: np.ndarray, ref_queries: np.ndarray, queries: np.ndarray,
                    k: int = 10) -> dict[str, float | int]:
    """The figures stored in the manifest and docs/benchmarks.md for one mode."""
    return {**compare(ref_chunks, chunks), "recall_at_k": recall_at_k(ref_chunks, ref_queries, chunks, queries, k),
            "k": k, "chunks": int(len(chunks)), "queries": int(len(queries))}
