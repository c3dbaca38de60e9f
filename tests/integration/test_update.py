"""`ingest --update`: unchanged documents add nothing, changed ones replace their chunks, new ones are added."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from aaflow_core.cli.main import EXIT_OK, main
from aaflow_core.errors import ConfigError, IndexDirError
from aaflow_core.operators.load import doc_id_for
from aaflow_core.pipelines import IngestConfig, ingest
from aaflow_core.stores import IndexReader

pytestmark = pytest.mark.model


def config(corpus: Path, index: Path, **kw) -> IngestConfig:
    kw.setdefault("threads", 2)
    kw.setdefault("window", 64)
    return IngestConfig(paths=(str(corpus),), index_dir=str(index), progress=False, **kw)


def contents(index: Path) -> dict[str, tuple[str, str, np.ndarray]]:
    """chunk_id -> (doc_id, text, vector) of every stored row."""
    reader = IndexReader(index)
    rows, vectors = reader.rows, reader.vectors()
    return {cid: (doc, text, vectors[i]) for i, (cid, doc, text) in
            enumerate(zip(*(rows.column(c).to_pylist() for c in ("chunk_id", "doc_id", "text"))))}


def files_state(index: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(index.iterdir())}


@pytest.fixture(scope="module")
def first(small_corpus, tmp_path_factory, embedder):
    work = tmp_path_factory.mktemp("update")
    corpus = work / small_corpus.name
    shutil.copytree(small_corpus, corpus)
    ingest(config(corpus, work / "index"))
    return corpus, work / "index"


def test_unchanged_input_adds_nothing_and_leaves_the_index_untouched(first):
    corpus, index = first
    before = files_state(index)
    result = ingest(config(corpus, index, update=True))
    assert result.manifest["update"]["unchanged"] == 3
    assert result.manifest["update"]["changed"] == result.manifest["update"]["new"] == 0
    assert files_state(index) == before


def test_changed_document_replaces_its_chunks_and_new_ones_are_added(first, tmp_path):
    corpus, index = first
    work = tmp_path / "w"
    shutil.copytree(corpus, work / corpus.name)
    shutil.copytree(index, work / "index")
    edited, removed = work / corpus.name / "json.txt", work / corpus.name / "shlex.txt"
    edited.write_text(edited.read_text(encoding="utf-8") + "\n\nA paragraph added after the first ingest.\n",
                      encoding="utf-8")
    (work / corpus.name / "notes.txt").write_text("A new document about queues and backpressure.\n" * 40,
                                                  encoding="utf-8")
    removed.unlink()  # not in the input any more: its chunks stay
    old = contents(work / "index")

    result = ingest(config(work / corpus.name, work / "index", update=True))
    u = result.manifest["update"]
    assert (u["unchanged"], u["changed"], u["new"], u["kept_not_in_input"]) == (1, 1, 1, 1)
    assert u["changed_sources"] == [f"{corpus.name}/json.txt"] and u["new_sources"] == [f"{corpus.name}/notes.txt"]
    updated = contents(work / "index")

    # What a fresh ingest of the same files gives, plus the kept document's old rows.
    removed.write_text((corpus / "shlex.txt").read_text(encoding="utf-8"), encoding="utf-8")
    fresh = contents(ingest(config(work / corpus.name, work / "fresh")).index_dir)
    assert set(updated) == set(fresh)
    for cid, (doc, text, vector) in updated.items():
        assert (doc, text) == fresh[cid][:2]
        assert np.abs(vector - fresh[cid][2]).max() < 1e-5
    json_doc = doc_id_for(u["changed_sources"][0])
    untouched = [cid for cid, (doc, _, _) in old.items() if doc != json_doc]
    assert untouched and all(np.array_equal(old[c][2], updated[c][2]) for c in untouched)  # not re-embedded
    stale = set(old) - set(updated)
    assert stale and {old[c][0] for c in stale} == {json_doc}  # only json.txt's old chunks went
    assert result.manifest["counts"]["chunks"] == len(updated)

    again = ingest(config(work / corpus.name, work / "index", update=True))
    assert again.manifest["update"]["unchanged"] == 4 and again.manifest["output_sha256"] == result.manifest["output_sha256"]


def test_update_refuses_other_settings_and_overwrite(first, capsys):
    corpus, index = first
    with pytest.raises(IndexDirError, match="chunk_size"):
        ingest(config(corpus, index, update=True, chunk_size=500))
    with pytest.raises(ConfigError, match="overwrite"):
        config(corpus, index, update=True, overwrite=True)
    assert main(["ingest", str(corpus), "--index", str(index), "--update", "--window", "64",
                 "--no-progress"]) == EXIT_OK
    assert "up to date" in capsys.readouterr().out


def test_update_of_a_missing_index_is_a_plain_ingest(small_corpus, tmp_path):
    result = ingest(config(small_corpus, tmp_path / "new", update=True))
    assert "update" not in result.manifest and result.manifest["counts"]["documents"] == 3


def test_a_failed_update_keeps_the_old_index_and_resumes_to_the_uninterrupted_result(first, tmp_path, monkeypatch):
    from aaflow_core.stores import journal as journal_mod

    corpus, _ = first
    for name in ("a", "b"):
        shutil.copytree(corpus, tmp_path / name / corpus.name)
        ingest(config(tmp_path / name / corpus.name, tmp_path / name / "index", window=8, batch_size=8))
        edited = tmp_path / name / corpus.name / "json.txt"
        edited.write_text(edited.read_text(encoding="utf-8").replace("JSON", "Json"), encoding="utf-8")
    whole = ingest(config(tmp_path / "a" / corpus.name, tmp_path / "a" / "index", window=8, batch_size=8, update=True))

    before = files_state(tmp_path / "b" / "index")
    real = journal_mod.Journal.commit

    def commit(self, batch):
        if len(self.parts) >= 2:
            raise OSError("disk full (injected)")
        return real(self, batch)

    with monkeypatch.context() as m:
        m.setattr(journal_mod.Journal, "commit", commit)
        with pytest.raises(Exception, match="disk full"):
            ingest(config(tmp_path / "b" / corpus.name, tmp_path / "b" / "index", window=8, batch_size=8, update=True))
    assert files_state(tmp_path / "b" / "index") == before  # the old index is intact
    with pytest.raises(IndexDirError, match="--resume"):
        ingest(config(tmp_path / "b" / corpus.name, tmp_path / "b" / "index", window=8, batch_size=8, update=True))
    resumed = ingest(config(tmp_path / "b" / corpus.name, tmp_path / "b" / "index", window=8, batch_size=8, update=True,
                            resume=True))
    assert resumed.manifest["resumed_parts"] == 2
    assert resumed.manifest["output_sha256"] == whole.manifest["output_sha256"]
    assert files_state(tmp_path / "b" / "index")["index.faiss"] == files_state(tmp_path / "a" / "index")["index.faiss"]
