"""The side-by-side notebooks run top to bottom on a tiny corpus, headless (nbclient), so they never rot.

Each notebook asserts inside itself that stock and aaflow give the same outputs; this test fails
if any cell raises. The kernel is this interpreter, registered in a temporary kernelspec folder,
so it works on a fresh machine where `make test` did all the set-up.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ("langchain_side_by_side.ipynb", "llamaindex_side_by_side.ipynb")
KERNEL = "aaflow-notebook-test"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernelspec for the current interpreter, visible through JUPYTER_PATH."""
    base = tmp_path_factory.mktemp("jupyter")
    spec = base / "kernels" / KERNEL
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "aaflow test kernel", "language": "python",
    }))
    return base


@pytest.mark.model
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_outputs_agree(name: str, kernel_env: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_env))
    monkeypatch.setenv("AAFLOW_NB_CORPUS_MB", "0.02")
    monkeypatch.setenv("AAFLOW_NB_QUESTIONS", "8")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    for key, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                       "OMP_WAIT_POLICY": "PASSIVE", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name=KERNEL,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the timing plot was not drawn"
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "identical" in text  # printed after the notebook's own equality asserts
    assert re.search(r"\d+\.\d\dx", text), "no speedup printed"
