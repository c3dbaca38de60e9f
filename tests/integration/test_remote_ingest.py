"""`aaflow ingest --embed-url`: the index embeds through an endpoint (faults retried), queries use it too."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from aaflow_core.cli.main import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from aaflow_core.pipelines.query import query
from aaflow_core.serve import HashEmbeddings, ServerThread, create_app
from aaflow_core.serve.faults import Fault, script


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(3):
        (folder / f"doc{i}.txt").write_text(" ".join(f"Paragraph {i}.{j} says word{j * i} and more." for j in range(60)))
    return folder


def test_ingest_embeds_through_the_endpoint_and_query_uses_it(corpus, tmp_path, capsys):
    app = create_app(embeddings=HashEmbeddings(dim=32))
    plan = script(app, [Fault("429", retry_after_s=0.05), Fault("5xx", status=502)])
    index = tmp_path / "index"
    with ServerThread(app) as srv:
        rc = main(["ingest", str(corpus), "--index", str(index), "--embed-url", srv.base_url, "--embed-model", "m",
                   "--chunk-size", "200", "--chunk-overlap", "20", "--batch-size", "8", "--no-progress"])
        assert rc == EXIT_OK
        manifest = json.loads((index / "manifest.json").read_text())
        ingest_requests = len(plan.seen)
        chunk = query(index, ["any question"], k=1)[0][0].text
        hits = query(index, [chunk], k=1)  # a chunk's own text: its vector is the server's, so it ranks first
    usage = manifest["remote_usage"]
    assert manifest["model"] == "m" and manifest["dim"] == 32 and manifest["embed_mode"]["label"] == "remote:m"
    assert usage["retries"] == 2 and usage["rejections"] == 1 and usage["failed"] == 0
    assert usage["requests"] == ingest_requests and len(plan.seen) == ingest_requests + 2  # queries: one request each
    assert hits[0][0].text == chunk  # the question went through the same endpoint and model
    assert "endpoint " in capsys.readouterr().out


def test_ingest_against_a_dead_endpoint_fails_naming_the_chunk(corpus, tmp_path, capsys):
    rc = main(["ingest", str(corpus), "--index", str(tmp_path / "index"), "--embed-url", "http://127.0.0.1:9/v1",
               "--embed-model", "m", "--no-progress"])
    assert rc == EXIT_FAILED
    err = capsys.readouterr().err
    assert "chunk '" in err and "127.0.0.1:9/v1/embeddings" in err
    assert not (tmp_path / "index" / "manifest.json").exists()


def test_embed_model_without_url_is_a_usage_error(corpus, tmp_path, capsys):
    assert main(["ingest", str(corpus), "--index", str(tmp_path / "i"), "--embed-model", "m"]) == EXIT_USAGE
    assert "--embed-url" in capsys.readouterr().err
