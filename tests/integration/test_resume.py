"""Crash and resume: `aaflow ingest` SIGKILLed at random points, then `--resume`, equals an uninterrupted run."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aaflow_core.errors import IndexDirError
from aaflow_core.pipelines import IngestConfig, ingest
from aaflow_core.stores import journal as journal_mod
from aaflow_core.stores.journal import JOURNAL_FILE, work_dir_for

pytestmark = pytest.mark.model

FLAGS = ["--chunk-size", "400", "--chunk-overlap", "40", "--window", "4", "--batch-size", "4", "--threads", "2",
         "--no-progress"]
SEEDS = (11, 22, 33)


@pytest.fixture(scope="module")
def corpus(small_corpus, tmp_path_factory) -> Path:
    """Two pydoc page heads: about 9 windows of 4 chunks, so kills land between and inside commits."""
    folder = tmp_path_factory.mktemp("resume") / "docs"
    folder.mkdir()
    for name in ("json.txt", "shlex.txt"):
        (folder / name).write_bytes((small_corpus / name).read_bytes()[:6000])
    return folder


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "aaflow_core.cli.main", "ingest", *args]


def env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def sha_of(stdout: str) -> str:
    return next(line.split("=", 1)[1] for line in stdout.splitlines() if line.startswith("output_sha256="))


def index_bytes(index: Path) -> dict[str, bytes]:
    return {name: (index / name).read_bytes() for name in ("index.faiss", "chunks.parquet")}


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory):
    index = tmp_path_factory.mktemp("ref") / "index"
    out = subprocess.run(cli(str(corpus), "--index", str(index), *FLAGS), capture_output=True, text=True, env=env())
    assert out.returncode == 0, out.stderr
    manifest = json.loads((index / "manifest.json").read_text())
    return sha_of(out.stdout), index_bytes(index), manifest


def journal_lines(work: Path) -> int:
    try:
        return (work / JOURNAL_FILE).read_text().count("\n")
    except OSError:
        return 0


def kill_after(proc: subprocess.Popen, work: Path, lines: int, delay_s: float) -> bool:
    """SIGKILL once the journal has `lines` lines (header included), `delay_s` later; False if it ended first."""
    while journal_lines(work) < lines and proc.poll() is None:
        time.sleep(0.005)
    time.sleep(delay_s)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


@pytest.mark.parametrize("seed", SEEDS)
def test_sigkill_at_random_points_then_resume_equals_uninterrupted(seed, corpus, uninterrupted, tmp_path):
    ref_sha, ref_bytes, ref_manifest = uninterrupted
    parts = -(-ref_manifest["counts"]["chunks"] // 4)
    rng = random.Random(seed)
    committed, delay = rng.randint(1, parts - 1), rng.uniform(0.0, 0.3)
    index = tmp_path / "index"
    work = work_dir_for(index)
    proc = subprocess.Popen(cli(str(corpus), "--index", str(index), *FLAGS), env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = kill_after(proc, work, 1 + committed, delay)
    seen = journal_lines(work) - 1
    if killed and seen >= 1 and seed == SEEDS[0]:
        again = subprocess.run(cli(str(corpus), "--index", str(index), *FLAGS), capture_output=True, text=True, env=env())
        assert again.returncode == 1 and "--resume" in again.stderr  # never silently restarted or overwritten
        assert journal_lines(work) - 1 == seen
    out = subprocess.run(cli(str(corpus), "--index", str(index), "--resume", *FLAGS), capture_output=True,
                         text=True, env=env())
    assert out.returncode == 0, out.stderr
    assert sha_of(out.stdout) == ref_sha
    assert index_bytes(index) == ref_bytes
    manifest = json.loads((index / "manifest.json").read_text())
    if killed and seen >= 1:
        assert manifest["resumed_parts"] >= seen  # finished from the checkpoint, not from scratch
    assert not work.exists() and not list(tmp_path.glob(".index.*"))


def config(paths, index: Path, **kw) -> IngestConfig:
    return IngestConfig(paths=tuple(str(p) for p in paths), index_dir=str(index), progress=False, threads=2,
                        chunk_size=400, chunk_overlap=40, window=4, batch_size=4, **kw)


def fail_after(monkeypatch, commits: int) -> None:
    """Make the run die (as an exception) after `commits` parts: the in-process stand-in for a crash."""
    real = journal_mod.Journal.commit

    def commit(self, batch):
        if len(self.parts) >= commits:
            raise OSError("disk full (injected)")
        return real(self, batch)

    monkeypatch.setattr(journal_mod.Journal, "commit", commit)


def test_resume_after_a_failure_equals_an_uninterrupted_run(corpus, tmp_path, monkeypatch, embedder):
    whole = ingest(config([corpus], tmp_path / "whole"))
    with monkeypatch.context() as m:
        fail_after(m, 3)
        with pytest.raises(Exception, match="disk full"):
            ingest(config([corpus], tmp_path / "idx"))
    assert not (tmp_path / "idx").exists() and journal_lines(work_dir_for(tmp_path / "idx")) == 4
    resumed = ingest(config([corpus], tmp_path / "idx", resume=True))
    assert resumed.manifest["output_sha256"] == whole.manifest["output_sha256"]
    assert resumed.manifest["resumed_parts"] == 3
    assert index_bytes(tmp_path / "idx") == index_bytes(tmp_path / "whole")


def test_resume_refuses_a_checkpoint_of_other_input_or_settings(corpus, tmp_path, monkeypatch, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    for f in corpus.iterdir():
        (docs / f.name).write_bytes(f.read_bytes())
    with monkeypatch.context() as m:
        fail_after(m, 2)
        with pytest.raises(Exception, match="disk full"):
            ingest(config([docs], tmp_path / "idx"))
    with pytest.raises(IndexDirError, match="different job.*fingerprint"):
        ingest(IngestConfig(paths=(str(docs),), index_dir=str(tmp_path / "idx"), progress=False, threads=2,
                            chunk_size=300, chunk_overlap=40, window=4, batch_size=4, resume=True))
    (docs / "json.txt").write_text("A different first page.\n\n" + (docs / "json.txt").read_text())
    with pytest.raises(IndexDirError, match="part 0 holds other chunks"):
        ingest(config([docs], tmp_path / "idx", resume=True))
    assert journal_lines(work_dir_for(tmp_path / "idx")) == 3  # the checkpoint is kept, never half-used
    fresh = ingest(config([docs], tmp_path / "idx", overwrite=True))  # --overwrite starts over
    assert fresh.manifest["resumed_parts"] == 0 and not work_dir_for(tmp_path / "idx").exists()
