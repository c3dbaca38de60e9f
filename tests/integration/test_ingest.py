"""End to end on the real model and real FAISS: determinism, parity with the model, zero-copy, bad input."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aaflow_core.cli.main import EXIT_FAILED, EXIT_OK, EXIT_SKIPPED, main
from aaflow_core.dataplane import buffer_address
from aaflow_core.errors import IndexDirError, NoInputError
from aaflow_core.models import cpu_features
from aaflow_core.pipelines import IngestConfig, ingest, query
from aaflow_core.stores import IndexReader
from aaflow_core.stores import faiss_store

pytestmark = pytest.mark.model


def config(paths, index: Path, **kw) -> IngestConfig:
    kw.setdefault("threads", 2)
    return IngestConfig(paths=tuple(str(p) for p in paths), index_dir=str(index), progress=False, **kw)


@pytest.fixture(scope="module")
def built(small_corpus, tmp_path_factory, embedder):
    index = tmp_path_factory.mktemp("idx") / "index"
    return ingest(config([small_corpus], index, window=64))


def test_same_corpus_twice_gives_the_same_output_sha256(built, small_corpus):
    files = {name: (built.index_dir / name).read_bytes() for name in ("index.faiss", "chunks.parquet")}
    again = ingest(config([small_corpus], built.index_dir, window=64, overwrite=True))
    assert again.manifest["output_sha256"] == built.manifest["output_sha256"]
    assert again.manifest["fingerprint"] == built.manifest["fingerprint"]
    for name, data in files.items():
        assert (built.index_dir / name).read_bytes() == data


def test_threads_backend_equals_serial_reference(built, small_corpus, tmp_path):
    serial = ingest(config([small_corpus], tmp_path / "serial", window=64, executor="serial"))
    assert serial.manifest["output_sha256"] == built.manifest["output_sha256"]


def test_embeddings_match_sentence_transformers(built, embedder):
    reader = IndexReader(built.index_dir)
    texts = reader.rows.column("text").to_pylist()
    reference = embedder.model.encode(texts, batch_size=32, convert_to_numpy=True)
    assert np.max(np.abs(reader.vectors() - reference)) < 1e-5


def test_manifest_records_what_the_issue_requires(built):
    m = json.loads((built.index_dir / "manifest.json").read_text())
    assert set(m) >= {"fingerprint", "resources", "counts", "output_sha256", "phases_s", "total_s", "versions", "skipped"}
    assert set(m["phases_s"]) == {"load", "chunk", "embed", "upsert"}
    assert m["counts"]["documents"] == 3 and m["counts"]["chunks"] == len(IndexReader(built.index_dir))
    assert {"aaflow", "pyarrow", "torch", "faiss-cpu"} <= set(m["versions"])
    assert m["cpu"]["model"] and m["cpu"]["cores"] >= 1 and set(m["cpu"]["features"]) <= set(cpu_features())


def test_faiss_receives_a_view_of_the_arrow_embedding_column(small_corpus, tmp_path, monkeypatch, embedder):
    column_addresses, faiss_addresses = [], []
    real_faiss = faiss_store._faiss()

    class SpyIndex(real_faiss.IndexFlatIP):
        def add(self, x):
            faiss_addresses.append(buffer_address(x))
            return super().add(x)

    class SpyFaiss:
        IndexFlatIP = SpyIndex

        def __getattr__(self, name):
            return getattr(real_faiss, name)

    real_add = faiss_store.IndexWriter.add

    def add(self, batch):
        column_addresses.append(buffer_address(batch.column("embedding")))
        return real_add(self, batch)

    monkeypatch.setattr(faiss_store, "_faiss", lambda: SpyFaiss())
    monkeypatch.setattr(faiss_store.IndexWriter, "add", add)
    ingest(config([small_corpus], tmp_path / "spy", window=32))
    assert len(column_addresses) >= 2
    assert faiss_addresses == column_addresses


def test_query_returns_ranked_hits_from_the_right_page(built):
    hits = query(built.index_dir, ["How do I split a string the way a shell does?", "serialize to JSON"], k=3)
    assert [len(h) for h in hits] == [3, 3]
    assert hits[0][0].source.endswith("shlex.txt") and hits[1][0].source.endswith("json.txt")
    assert [h.rank for h in hits[0]] == [1, 2, 3]
    assert hits[0][0].score >= hits[0][1].score >= hits[0][2].score


def test_bad_files_are_skipped_named_and_good_ones_kept(small_corpus, tmp_path, capsys):
    corpus = tmp_path / "mixed"
    shutil.copytree(small_corpus, corpus)
    (corpus / "binary.txt").write_bytes(b"\x00\x01\x02 not text")
    (corpus / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (corpus / "empty.txt").write_text("")
    with open(corpus / "huge.txt", "wb") as f:  # a sparse 1 GiB file: refused by size, never read
        f.truncate(2**30)
    (tmp_path / "emptydir").mkdir()
    args = [str(corpus), str(tmp_path / "missing"), str(tmp_path / "emptydir")]
    code = main(["ingest", *args, "--index", str(tmp_path / "idx"), "--threads", "2", "--no-progress"])
    assert code == EXIT_SKIPPED
    err = capsys.readouterr().err
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    reasons = {Path(s["item"]).name: s["reason"] for s in manifest["skipped"]}
    assert reasons == {
        "binary.txt": "binary file (NUL bytes)", "latin1.txt": "not valid UTF-8 (byte 3)", "empty.txt": "empty file",
        "huge.txt": f"file too large ({2**30} bytes > limit {64 * 2**20})", "missing": "no such file or directory",
        "emptydir": "directory has no files with a suffix in .txt, .md, .rst, .py, .html",
    }
    for name in reasons:
        assert name in err
    assert manifest["counts"]["documents"] == 3


def test_nothing_usable_fails_without_writing_an_index(tmp_path):
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "a.txt").write_bytes(b"\x00")
    with pytest.raises(NoInputError, match="a.txt: binary"):
        ingest(config([tmp_path / "only"], tmp_path / "idx"))
    assert not (tmp_path / "idx").exists()
    assert not list(tmp_path.glob(".idx.staging-*"))


def test_a_directory_that_is_not_an_index_is_never_overwritten(small_corpus, tmp_path):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    for overwrite in (False, True):
        with pytest.raises(IndexDirError, match="not an aaflow index"):
            ingest(config([small_corpus], target, overwrite=overwrite))
    assert [p.name for p in target.iterdir()] == ["thesis.tex"]


def test_an_existing_index_needs_overwrite(built, small_corpus, tmp_path):
    target = tmp_path / "idx"
    shutil.copytree(built.index_dir, target)
    assert main(["ingest", str(small_corpus), "--index", str(target), "--no-progress"]) == EXIT_FAILED
    assert main(["ingest", str(small_corpus), "--index", str(target), "--no-progress", "--overwrite",
                 "--chunk-size", "500", "--chunk-overlap", "50"]) == EXIT_OK
    assert pq.read_metadata(target / "chunks.parquet").num_rows > len(IndexReader(built.index_dir))


@pytest.mark.parametrize("argv", [["--chunk-size", "0"], ["--chunk-overlap", "-1"], ["--batch-size", "x"],
                                  ["--chunk-size", "100", "--chunk-overlap", "100"]])
def test_bad_cli_values_are_usage_errors(small_corpus, tmp_path, argv):
    with pytest.raises(SystemExit) as info:
        code = main(["ingest", str(small_corpus), "--index", str(tmp_path / "i"), *argv])
        raise SystemExit(code)
    assert info.value.code == 2


def test_query_json_prints_exactly_one_line(built):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "aaflow_core.cli.main", "query", "json decoder", "--index",
                          str(built.index_dir), "-k", "2", "--json"], capture_output=True, text=True, env=env, check=True)
    lines = out.stdout.splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["query"] == "json decoder" and [h["rank"] for h in doc["hits"]] == [1, 2]
    assert set(doc["hits"][0]) == {"rank", "score", "source", "chunk_id", "text"}
