"""Each embedding mode against fp32 on real text, with the bundled model (tolerances: models.modes.TOLERANCES)."""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from aaflow_core.models import TOLERANCES, PrecisionFallbackWarning, build_embedder, cpu_features
from aaflow_core.models import auto
from aaflow_core.models.accuracy import compare
from aaflow_core.models.modes import bf16_isa
from aaflow_core.operators.embed import shared_embedder
from aaflow_core.pipelines import IngestConfig, ingest

pytestmark = pytest.mark.model


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Exports go to a per-session folder, so the test exercises the export and leaves the user cache alone."""
    folder = tmp_path_factory.mktemp("aaflow-cache")
    old = os.environ.get("AAFLOW_CACHE_DIR")
    os.environ["AAFLOW_CACHE_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("AAFLOW_CACHE_DIR", None)
    else:
        os.environ["AAFLOW_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def texts(small_corpus: Path) -> list[str]:
    """16 real 1000-character pieces of pydoc pages."""
    text = "".join(p.read_text() for p in sorted(small_corpus.iterdir()))
    return [text[i : i + 1000] for i in range(0, 16 * 3000, 3000)]


@pytest.fixture(scope="session")
def fp32(embedder, texts: list[str]) -> np.ndarray:
    return embedder.encode(texts)


@pytest.mark.parametrize("precision, backend", [("bf16", "torch"), ("int8", "torch"), ("fp32", "onnx"), ("int8", "onnx"),
                                               ("fp32", "openvino")])
def test_mode_matches_fp32_within_its_tolerance(precision: str, backend: str, texts: list[str], fp32: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionFallbackWarning)
        model = shared_embedder(None, 2, precision, backend)
    label = model.mode.effective.label
    vectors = model.encode(texts)
    assert vectors.dtype == np.float32 and vectors.shape == fp32.shape and vectors.flags.c_contiguous
    figures, tol = compare(fp32, vectors), TOLERANCES[label]
    assert tol.admits(figures), (label, figures)
    if label != "torch-fp32":
        assert figures["max_abs_diff"] > 0, f"{label} gave fp32's exact bits: the mode did not take effect"
    assert np.array_equal(model.encode(texts), vectors)  # same input, same mode => same bits


def test_bf16_runs_natively_here_or_reports_the_fallback_on_every_call() -> None:
    """Whatever loaded the model earlier in this process, each call is told about a fallback."""
    for _ in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mode = shared_embedder(None, 2, "bf16", "torch").mode
        warned = [w for w in caught if w.category is PrecisionFallbackWarning]
        if bf16_isa(cpu_features()):
            assert mode.effective.precision == "bf16" and mode.isa in cpu_features() and mode.fallback is None
            assert not warned
        else:
            assert mode.effective.precision == "fp32" and "emulated" in mode.fallback
            assert len(warned) == 1 and mode.fallback in str(warned[0].message)


def test_bf16_fallback_on_a_cpu_without_bf16_gives_fp32_bits(texts: list[str], fp32: np.ndarray) -> None:
    with pytest.warns(PrecisionFallbackWarning):
        model = build_embedder(None, precision="bf16", threads=2, features=frozenset({"avx2", "fma"}))
    assert model.mode.effective.label == "torch-fp32" and model.mode.requested.precision == "bf16"
    assert np.array_equal(model.encode(texts), fp32)


def test_onnx_export_is_cached_beside_nothing_in_site_packages(onnx_cache: Path) -> None:
    model = shared_embedder(None, 2, "int8", "onnx")
    assert Path(model.model_file).is_relative_to(onnx_cache)  # type: ignore[attr-defined]
    names = sorted(p.name for p in Path(model.model_file).parent.iterdir())  # type: ignore[attr-defined]
    assert names == [".lock", "model.int8.onnx", "model.onnx"]


def test_ingest_records_mode_and_opt_in_accuracy_in_the_manifest(small_corpus: Path, tmp_path: Path) -> None:
    config = IngestConfig(paths=(str(small_corpus / "fnmatch.txt"),), index_dir=str(tmp_path / "index"), threads=2,
                          precision="int8", embed_backend="onnx", accuracy_report=True, progress=False)
    manifest = ingest(config).manifest
    assert manifest["embed_mode"]["label"] == "onnx-int8"
    embed_op = next(op for op in json.loads(manifest["plan"])["ops"] if op["kind"] == "embed")
    assert json.loads(embed_op["params"])["backend"] == "onnx" and json.loads(embed_op["params"])["precision"] == "int8"
    acc = manifest["accuracy"]
    assert acc["mode"] == "onnx-int8" and acc["sampled_rows"] == manifest["counts"]["chunks"]
    assert acc["min_cosine"] >= TOLERANCES["onnx-int8"].min_cosine and 0 < acc["max_abs_diff"] <= TOLERANCES["onnx-int8"].max_abs
    assert 0.0 <= acc["recall_at_k"] <= 1.0 and acc["k"] == 10
    plain = ingest(IngestConfig(paths=config.paths, index_dir=str(tmp_path / "plain"), threads=2, progress=False)).manifest
    assert "accuracy" not in plain and plain["embed_mode"]["label"] == "torch-fp32"
    assert plain["fingerprint"] != manifest["fingerprint"]


def test_openvino_ir_is_converted_once_into_the_cache_folder(onnx_cache: Path) -> None:
    model = build_embedder(None, backend="openvino", threads=2)  # not the process-wide one: it may predate the fixture
    ir = Path(model.model_file)  # type: ignore[attr-defined]
    assert ir.is_relative_to(onnx_cache / "openvino") and sorted(p.name for p in ir.parent.iterdir()) == ["model.bin", "model.xml"]
    again = build_embedder(None, backend="openvino", threads=2)
    assert again.model_file == ir and ir.stat().st_mtime_ns == Path(model.model_file).stat().st_mtime_ns  # type: ignore[attr-defined]


def test_auto_measures_once_per_machine_and_ingest_records_the_choice(small_corpus: Path, tmp_path: Path,
                                                                      texts: list[str], fp32: np.ndarray,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    choice = auto.choose_mode(None, 2, texts=texts[:12])  # default candidates for this CPU, short calibration
    assert set(choice.measured) == {m.label for m in auto.candidates(cpu_features())}
    label = f"{choice.backend}-{choice.precision}"
    assert choice.measured[label]["accepted"] and label in choice.why
    assert all(m["speedup"] <= choice.measured[label]["speedup"] for m in choice.measured.values() if m["accepted"]
               and m["speedup"] >= auto.MIN_GAIN) or label == "torch-fp32"
    monkeypatch.setattr(auto, "calibrate", lambda *a, **k: pytest.fail("calibrated twice on one machine"))
    config = IngestConfig(paths=(str(small_corpus / "fnmatch.txt"),), index_dir=str(tmp_path / "index"), threads=2,
                          precision="auto", embed_backend="auto", progress=False)
    assert (config.precision, config.embed_backend) == (choice.precision, choice.backend)
    manifest = ingest(config).manifest
    assert manifest["embed_mode"]["label"] == label and manifest["embed_mode"]["auto"] == choice.to_dict()
    chosen = shared_embedder(None, 2, choice.precision, choice.backend)
    assert TOLERANCES[label].admits(compare(fp32, chosen.encode(texts)))


@pytest.mark.timeout(120)
def test_openvino_encodes_from_several_threads_at_once(texts: list[str], fp32: np.ndarray) -> None:
    from concurrent.futures import ThreadPoolExecutor

    model = shared_embedder(None, 2, "fp32", "openvino")
    alone = model.encode(texts, 8)
    with ThreadPoolExecutor(4) as pool:  # callers on threads (a stage pool, a user's) share one compiled model
        together = list(pool.map(lambda _: model.encode(texts, 8), range(12)))
    assert all(np.array_equal(m, alone) for m in together)
    assert np.abs(alone - fp32).max() <= TOLERANCES["openvino-fp32"].max_abs
