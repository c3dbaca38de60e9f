"""`aaflow serve-llm` as a user starts it: exposure refused without a key, and a real process behind keys.

The refusals happen before any model loads; the running server uses `--echo` (no LLM) and is
talked to over real HTTP on 127.0.0.1.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from aaflow_core.cli.main import EXIT_FAILED, main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch):
    monkeypatch.delenv("AAFLOW_API_KEY", raising=False)


def test_allow_remote_without_a_key_is_refused(capsys):
    assert main(["serve-llm", "--host", "0.0.0.0", "--allow-remote"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "without an API key" in err and "--api-key-file" in err and "AAFLOW_API_KEY" in err
    assert "--insecure-no-auth" in err


def test_insecure_no_auth_beside_a_key_and_an_empty_key_file_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AAFLOW_API_KEY", "sk-set")
    assert main(["serve-llm", "--allow-remote", "--insecure-no-auth"]) == EXIT_FAILED
    assert "API keys are set" in capsys.readouterr().err
    empty = tmp_path / "keys"
    empty.write_text("\n# no keys yet\n")
    assert main(["serve-llm", "--api-key-file", str(empty)]) == EXIT_FAILED
    assert "holds no key" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: dict | None = None, key: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body else None, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_up(proc: subprocess.Popen, url: str) -> None:
    for _ in range(600):  # the process imports aiohttp and friends first; a loaded machine is slow
        if proc.poll() is not None:
            raise AssertionError(f"serve-llm exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise AssertionError("serve-llm never answered /health")


def test_serve_llm_process_requires_the_key_and_logs_no_prompt(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("sk-first-key\nsk-second-key\n")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AAFLOW_API_KEY": "sk-env-key"}
    cmd = [sys.executable, "-m", "aaflow_core.cli.main", "serve-llm", "--echo", "--no-embeddings", "--port", str(port),
           "--api-key-file", str(keys), "--max-queue", "4"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(proc, base + "/health")
        status, health = call(base + "/health")
        assert status == 200 and health["max_queue"] == 4 and health["max_concurrency"] == 8
        ask = {"model": "m", "messages": [{"role": "user", "content": "private question words"}]}
        assert call(base + "/v1/chat/completions", ask)[0] == 401
        assert call(base + "/v1/chat/completions", ask, "sk-wrong")[0] == 401
        assert call(base + "/v1/models", None, "sk-wrong")[0] == 401
        for key in ("sk-first-key", "sk-second-key", "sk-env-key"):
            status, body = call(base + "/v1/chat/completions", ask, key)
            assert status == 200 and body["choices"][0]["message"]["content"] == "echo: private question words"
        status, body = call(base + "/v1/chat/completions", {**ask, "max_tokens": 10**6}, "sk-first-key")
        assert status == 400 and body["error"]["param"] == "max_tokens" and "at most 8189" in body["error"]["message"]
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert "3 API key(s) required" in out and "model echo" in out
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in err and '"POST /v1/chat/completions HTTP/1.1" 401' in err
    assert "private" not in err and "sk-" not in err
