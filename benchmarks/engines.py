"""`aaflow ingest --precision auto` vs stock LangChain `FAISS.from_documents(HuggingFaceEmbeddings)`, one run.

Both sides ingest the same held-out corpus (pydoc pages; the auto calibration uses other
modules' pages) into FAISS with the same chunking (1000/100): stock splits with
RecursiveCharacterTextSplitter and embeds the whole list in one HuggingFaceEmbeddings call;
aaflow runs the mode `auto` chose on this CPU (calibrated before timing, as a first run would
have). torch-fp32 aaflow is run too, so the engine's gain shows apart from the pipeline's.
Each side's model is loaded before it is timed; sides alternate; medians are reported.
Accuracy: max |diff| of every chunk's vector against stock (rows matched by chunk text) and
whether the top-10 of 20 questions is identical.

    python benchmarks/engines.py [--size-mb 0.3] [--repeats 2] [--out benchmarks/results/engines.json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# torch's spinning OpenMP threads collapse under CPU contention; every benchmark here runs passive
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchmarks.embed_modes import QUERIES  # noqa: E402

from aaflow_core.models import cpu_line, cpu_summary  # noqa: E402
from aaflow_core.models.accuracy import top_k  # noqa: E402
from aaflow_core.models.auto import choose_mode  # noqa: E402
from aaflow_core.models.embedding import bundled_model_path  # noqa: E402
from aaflow_core.operators.embed import shared_embedder  # noqa: E402
from aaflow_core.pipelines import IngestConfig, ingest  # noqa: E402
from aaflow_core.pipelines.corpus import write_stdlib_corpus  # noqa: E402
from aaflow_core.pipelines.ingest import default_threads  # noqa: E402
from aaflow_core.plan import package_versions  # noqa: E402
from aaflow_core.stores import IndexReader  # noqa: E402


def stock_side(folder: Path, hf: Any) -> tuple[float, dict[str, np.ndarray]]:
    from langchain_community.document_loaders import DirectoryLoader, TextLoader
    from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    t0 = time.perf_counter()
    docs = DirectoryLoader(str(folder), glob="*.txt", loader_cls=TextLoader, loader_kwargs={"encoding": "utf-8"}).load()
    chunks = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=100).split_documents(docs)
    store = FAISS.from_documents(chunks, hf)
    seconds = time.perf_counter() - t0
    vectors = store.index.reconstruct_n(0, store.index.ntotal)
    return seconds, {store.docstore.search(store.index_to_docstore_id[i]).page_content: vectors[i]
                     for i in range(store.index.ntotal)}


def aaflow_side(folder: Path, out: Path, threads: int, precision: str, backend: str) -> tuple[float, dict[str, np.ndarray], dict[str, Any]]:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    result = ingest(IngestConfig(paths=(str(folder),), index_dir=str(out), threads=threads, progress=False,
                                 precision=precision, embed_backend=backend))
    seconds = time.perf_counter() - t0
    reader = IndexReader(out)
    texts, vectors = reader.rows.column("text").to_pylist(), reader.vectors()
    return seconds, dict(zip(texts, vectors)), result.manifest["embed_mode"]


def top10(vectors: dict[str, np.ndarray], order: list[str], queries: np.ndarray) -> np.ndarray:
    return top_k(np.stack([vectors[t] for t in order]), queries, 10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=float, default=0.3)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=default_threads())
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "engines.json")
    args = p.parse_args(argv)
    from langchain_huggingface import HuggingFaceEmbeddings

    work = Path(tempfile.mkdtemp(prefix="aaflow-engines-"))
    folder = work / "corpus"
    write_stdlib_corpus(folder, int(args.size_mb * 2**20))
    print(cpu_line(), file=sys.stderr, flush=True)
    choice = choose_mode(None, args.threads)  # cached per machine; a first run calibrates here
    print(f"auto: {choice.why}", file=sys.stderr, flush=True)
    hf = HuggingFaceEmbeddings(model_name=str(bundled_model_path()))
    hf.embed_documents(["warm up"] * 8)
    for precision, backend in ((choice.precision, choice.backend), ("fp32", "torch")):
        shared_embedder(None, args.threads, precision, backend).encode(["warm up"] * 8)
    sides = {"stock": [], "aaflow_auto": [], "aaflow_torch_fp32": []}
    vectors: dict[str, dict[str, np.ndarray]] = {}
    for _ in range(args.repeats):
        s, vectors["stock"] = stock_side(folder, hf)
        sides["stock"].append(s)
        s, vectors["aaflow_auto"], mode = aaflow_side(folder, work / "auto", args.threads, "auto", "auto")
        sides["aaflow_auto"].append(s)
        s, vectors["aaflow_torch_fp32"], _ = aaflow_side(folder, work / "fp32", args.threads, "fp32", "torch")
        sides["aaflow_torch_fp32"].append(s)
        print({k: round(v[-1], 2) for k, v in sides.items()}, file=sys.stderr, flush=True)
    order = sorted(vectors["stock"])
    assert all(sorted(v) == order for v in vectors.values()), "the sides stored different chunk texts"
    queries = np.asarray(hf.embed_documents(list(QUERIES)), dtype=np.float32)
    want = top10(vectors["stock"], order, queries)
    median = {k: statistics.median(v) for k, v in sides.items()}
    report: dict[str, Any] = {
        "cpu": cpu_summary(), "threads": args.threads, "chunks": len(order), "repeats": args.repeats,
        "auto": choice.to_dict(), "manifest_embed_mode": mode, "seconds": sides,
        "median_s": {k: round(v, 3) for k, v in median.items()},
        "speedup_vs_stock": {k: round(median["stock"] / v, 3) for k, v in median.items()},
        "max_abs_diff_vs_stock": {k: float(max(np.abs(v[t] - vectors["stock"][t]).max() for t in order))
                                  for k, v in vectors.items()},
        "top10_identical": {k: bool(np.array_equal(top10(v, order, queries), want)) for k, v in vectors.items()},
        "versions": package_versions(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(cpu_line())
    print(f"{len(order)} chunks, {args.threads} threads, auto = {mode['label']}")
    for k in sides:
        print(f"{k}: {report['median_s'][k]} s, {report['speedup_vs_stock'][k]}x stock, "
              f"max|diff| {report['max_abs_diff_vs_stock'][k]:.1e}, top-10 identical {report['top10_identical'][k]}")
    print(f"wrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
