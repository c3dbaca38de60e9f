"""Bad input at every edge gets a precise error naming the value or item; nothing is half-written."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest

from aaflow_core.cli.main import main
from aaflow_core.errors import ConfigError, IndexDirError
from aaflow_core.operators.chunk import ChunkOperator
from aaflow_core.operators.load import LoadOperator
from aaflow_core.pipelines import IngestConfig
from aaflow_core.serve.faults import Fault
from aaflow_core.stores.journal import JOURNAL_FILE, Journal, work_dir_for


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "-4"], "argument --batch-size: -4 must be >= 1"),
    (["--chunk-size", "ten"], "argument --chunk-size: 'ten' is not an integer"),
    (["--chunk-overlap", "-1"], "argument --chunk-overlap: -1 must be >= 0"),
    (["--window", "0"], "argument --window: 0 must be >= 1"),
    (["--chunk-size", "100", "--chunk-overlap", "100"], "invalid chunk_overlap=100: must be >= 0 and < chunk_size (100)"),
])
def test_cli_values_are_usage_errors_naming_the_value(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        raise SystemExit(main(["ingest", str(tmp_path), "--index", str(tmp_path / "i"), *argv]))
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "i").exists() and not work_dir_for(tmp_path / "i").exists()


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", -1, "invalid batch_size=-1: must be >= 1"),
    ("files_per_batch", 0, "invalid files_per_batch=0: must be >= 1"),
    ("window", 8, "invalid window=8: must be >= batch_size (32)"),
    ("chunk_overlap", 1000, "invalid chunk_overlap=1000: must be >= 0 and < chunk_size (1000)"),
    ("max_file_bytes", 0, "invalid max_file_bytes=0: must be >= 1"),
])
def test_config_values_are_refused_before_any_work(tmp_path, field, value, message):
    with pytest.raises(ConfigError) as info:
        IngestConfig(paths=(str(tmp_path),), index_dir=str(tmp_path / "i"), **{field: value})
    assert str(info.value) == message and info.value.field == field


def load(tmp_path, files: dict[str, bytes], max_file_bytes: int = 2**20):
    op = LoadOperator(max_file_bytes=max_file_bytes)
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    docs = op.process(pa.RecordBatch.from_pydict({"path": paths, "source": list(files)}))
    return docs, {s.item.rsplit("/", 1)[-1]: s.reason for s in op.skipped}


def test_bad_documents_are_skipped_by_name_and_good_ones_kept(tmp_path):
    docs, reasons = load(tmp_path, {
        "good.txt": b"plain text\n", "bin.txt": b"ab\x00cd", "latin.txt": "na\xefve".encode("latin-1"),
        "empty.txt": b"", "blank.txt": b" \n\t\n", "big.txt": b"x" * 2000, "cut.txt": "\u00e9t\u00e9".encode()[:-1],
    }, max_file_bytes=1000)
    assert docs.column("source").to_pylist() == ["good.txt"]
    assert reasons == {"bin.txt": "binary file (NUL bytes)", "latin.txt": "not valid UTF-8 (byte 2)",
                       "empty.txt": "empty file", "blank.txt": "empty file",
                       "big.txt": "file too large (2000 bytes > limit 1000)", "cut.txt": "not valid UTF-8 (byte 3)"}


def test_a_huge_line_without_separators_is_cut_within_chunk_size(tmp_path):
    docs, reasons = load(tmp_path, {"line.txt": b"word" * 50_000 + b" tail"})
    chunks = ChunkOperator(chunk_size=500, chunk_overlap=50).process(docs)
    texts = chunks.column("text").to_pylist()
    assert not reasons and max(map(len, texts)) <= 500 and len(texts) >= 400
    assert texts[-1].endswith("tail") and chunks.column("seq").to_pylist() == list(range(len(texts)))


def test_checkpoint_of_a_killed_run_is_never_passed_over_silently(tmp_path):
    work = work_dir_for(tmp_path / "index")
    journal = Journal(work, {"job": 1}, resume=False)
    journal.commit(pa.RecordBatch.from_pydict({"chunk_id": ["a"], "text": ["t"]}))
    journal.close()
    with pytest.raises(IndexDirError, match="pass --resume to finish it or --overwrite to discard it"):
        Journal(work, {"job": 1}, resume=False)
    with pytest.raises(IndexDirError, match=r"different job \(differs in job\)"):
        Journal(work, {"job": 2}, resume=True)
    with open(work / JOURNAL_FILE, "a") as f:
        f.write('{"index": 1, "rows": 1, "sha2')  # a line torn by the kill
    resumed = Journal(work, {"job": 1}, resume=True)
    assert resumed.recovered == 1 and [b.column("chunk_id").to_pylist() for b in resumed.batches()] == [["a"]]
    with pytest.raises(IndexDirError, match="another aaflow process is ingesting"):
        Journal(work, {"job": 1}, resume=True)
    resumed.close()
    (work / "part-000000.parquet").write_bytes(b"corrupted")
    assert Journal(work, {"job": 1}, resume=True).recovered == 0  # a part whose bytes changed is redone
    assert json.loads((work / JOURNAL_FILE).read_text().splitlines()[0])["job"] == 1


def test_unknown_fault_kind_is_named():
    with pytest.raises(ValueError, match="unknown fault kind 'flaky'"):
        Fault("flaky")
