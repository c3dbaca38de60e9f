"""Embedding modes without a model: validation, CPU-feature fallback, placement, plan wiring, accuracy maths."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from aaflow_core.cli.main import main
from aaflow_core.errors import ConfigError
from aaflow_core.models.accuracy import accuracy_report, compare, recall_at_k, top_k
from aaflow_core.models.cpu import FEATURES_ENV, cpu_features, cpu_line, detected_features
from aaflow_core.models import auto
from aaflow_core.models.modes import TOLERANCES, PrecisionFallbackWarning, check_mode, check_request, resolve_mode
from aaflow_core.pipelines import IngestConfig
from aaflow_core.plan import Workflow, specs
from aaflow_core.plan.placement import intra_op_threads, place
from aaflow_core.plan.workflow import plan_fingerprint
from aaflow_core.runtime import bind


@pytest.mark.parametrize("precision, backend, field", [("fp16", "torch", "precision"), ("fp32", "tensorrt", "backend"),
                                                       ("bf16", "onnx", "precision")])
def test_check_mode_rejects_unknown_and_unsupported_modes(precision: str, backend: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_mode(precision, backend)
    assert info.value.field == field


@pytest.mark.parametrize("features, isa", [({"amx_bf16", "avx512_bf16", "avx2"}, "amx_bf16"),
                                           ({"avx512_bf16", "avx512f"}, "avx512_bf16")])
def test_bf16_runs_where_the_cpu_has_native_bf16(features: set[str], isa: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mode = resolve_mode("bf16", "torch", frozenset(features))
    assert (mode.effective.precision, mode.isa, mode.fallback) == ("bf16", isa, None)


def test_bf16_falls_back_to_fp32_with_a_warning_on_a_cpu_without_it() -> None:
    with pytest.warns(PrecisionFallbackWarning, match="avx512_bf16"):
        mode = resolve_mode("bf16", "torch", frozenset({"avx2", "avx512f", "fma"}))
    assert mode.requested.precision == "bf16" and mode.effective.precision == "fp32"
    assert mode.to_dict()["label"] == "torch-fp32" and "emulated" in mode.fallback


def test_other_modes_do_not_depend_on_cpu_features() -> None:
    for precision, backend in (("fp32", "torch"), ("int8", "torch"), ("fp32", "onnx"), ("int8", "onnx")):
        mode = resolve_mode(precision, backend, frozenset())
        assert mode.effective == mode.requested and mode.fallback is None


@pytest.mark.parametrize("cpus, ranks", [(2, 1), (2, 2), (7, 3), (16, 4), ((0, 2, 4, 6, 9), 2)])
def test_placement_uses_every_cpu_once(cpus: int | tuple[int, ...], ranks: int) -> None:
    ids = list(range(cpus)) if isinstance(cpus, int) else list(cpus)
    placed = place(cpus, ranks)
    assert [p.rank for p in placed] == list(range(ranks))
    assert sorted(c for p in placed for c in p.cpus) == ids  # each CPU exactly once
    assert all(p.threads == len(p.cpus) for p in placed)
    assert max(p.threads for p in placed) - min(p.threads for p in placed) <= 1
    assert place(cpus, ranks) == placed  # a pure function of the declared resources


def test_placement_gives_contiguous_groups_and_extra_cpus_to_low_ranks() -> None:
    assert [p.cpus for p in place((0, 2, 4, 6, 9), 2)] == [(0, 2, 4), (6, 9)]
    assert [intra_op_threads(7, 3, r) for r in range(3)] == [3, 2, 2]


def test_placement_oversubscribes_one_thread_per_rank_when_ranks_exceed_cpus() -> None:
    placed = place(2, 3)
    assert [(p.threads, p.cpus, p.oversubscribed) for p in placed] == [(1, (0,), True), (1, (1,), True), (1, (0,), True)]


@pytest.mark.parametrize("cpus, ranks, rank", [(0, 1, 0), (4, 0, 0), (4, 2, 2)])
def test_placement_rejects_bad_resources(cpus: int, ranks: int, rank: int) -> None:
    with pytest.raises(ConfigError):
        intra_op_threads(cpus, ranks, rank)


def _embed_plan(**mode: str) -> Workflow:
    return Workflow().add(specs.embed(**mode))


def test_mode_is_part_of_the_plan_and_reaches_the_operator() -> None:
    plans = {m: _embed_plan(precision=m[0], backend=m[1]).compile() for m in
             (("fp32", "torch"), ("bf16", "torch"), ("int8", "torch"), ("fp32", "onnx"), ("int8", "onnx"))}
    assert len({plan_fingerprint(p) for p in plans.values()}) == len(plans)
    for (precision, backend), plan in plans.items():
        (_, rebatch), (_, op) = bind(plan)
        assert (op.requested.precision, op.requested.backend) == (precision, backend)
    assert plan_fingerprint(_embed_plan().compile()) == plan_fingerprint(plans[("fp32", "torch")])


def test_ingest_config_and_cli_reject_an_invalid_mode(tmp_path, capsys) -> None:
    with pytest.raises(ConfigError):
        IngestConfig(paths=("x",), index_dir=str(tmp_path), precision="bf16", embed_backend="onnx")
    assert main(["ingest", str(tmp_path), "--index", str(tmp_path / "i"), "--precision", "bf16", "--backend", "onnx"]) == 2
    assert "bf16 runs on the torch backend only" in capsys.readouterr().err


def test_top_k_breaks_ties_by_row_and_recall_counts_overlap() -> None:
    index = np.array([[1, 0], [1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    queries = np.array([[1, 0], [0, 1]], dtype=np.float32)
    assert top_k(index, queries, 2).tolist() == [[0, 1], [2, 3]]
    assert recall_at_k(index, queries, index, queries, k=2) == 1.0
    swapped = index[[2, 1, 0, 3]]  # row 0 and 2 exchanged: query 0 keeps row 1 only, query 1 keeps row 3 only
    assert recall_at_k(index, queries, swapped, queries, k=2) == 0.5


def test_accuracy_report_measures_the_difference() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((50, 8)).astype(np.float32)
    noisy = ref + np.float32(0.01) * rng.standard_normal((50, 8)).astype(np.float32)
    report = accuracy_report(ref, noisy, ref[:5], noisy[:5], k=10)
    assert 0 < report["max_abs_diff"] < 0.1 and 0.99 < report["min_cosine"] < 1.0
    assert (report["chunks"], report["queries"], report["k"]) == (50, 5, 10)
    assert compare(ref, ref)["max_abs_diff"] == 0.0
    with pytest.raises(ValueError, match="shape mismatch"):
        compare(ref, ref[:3])


def test_identical_vectors_are_within_every_tolerance_whatever_the_cosine_rounding() -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((16, 384)).astype(np.float32)
    figures = compare(vectors, vectors.copy())
    assert figures["max_abs_diff"] == 0.0 and abs(figures["min_cosine"] - 1.0) < 1e-12
    rounded = {**figures, "min_cosine": 0.9999999}  # what float32 norms gave for identical rows
    assert all(tol.admits(rounded) for tol in TOLERANCES.values())
    moved = vectors.copy()
    moved[3, 5] += 1e-6
    assert not TOLERANCES["torch-fp32"].admits(compare(vectors, moved))
    assert TOLERANCES["onnx-fp32"].admits(compare(vectors, moved))


def test_simulated_cpu_features_drive_the_fallback_and_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FEATURES_ENV, "avx2,fma")
    assert cpu_features() == {"avx2", "fma"}
    assert "avx2 fma" in cpu_line() and "simulated" in cpu_line() and "avx512f" not in cpu_line()
    with pytest.warns(PrecisionFallbackWarning):
        mode = resolve_mode("bf16", "torch", cpu_features())
    assert mode.effective.label == "torch-fp32" and mode.to_dict()["isa"] is None
    monkeypatch.setenv(FEATURES_ENV, "avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile")
    assert resolve_mode("bf16", "torch", cpu_features()).isa == "amx_bf16"
    monkeypatch.delenv(FEATURES_ENV)
    assert cpu_features() == detected_features() and "simulated" not in cpu_line()


@pytest.mark.parametrize("precision, backend, field", [("auto", "torch", "backend"), ("fp32", "auto", "precision"),
                                                       ("bf16", "openvino", "precision"), ("int8", "openvino", "precision")])
def test_auto_goes_with_auto_and_openvino_runs_fp32_only(precision: str, backend: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_request(precision, backend)
    assert info.value.field == field
    assert check_request("auto", "auto") == ("auto", "auto") and check_request("fp32", "openvino") == ("fp32", "openvino")


def test_auto_candidates_are_exact_modes_plus_bf16_only_where_native() -> None:
    avx2 = [m.label for m in auto.candidates(frozenset({"avx2", "fma"}))]
    assert avx2 == ["torch-fp32", "onnx-fp32", "openvino-fp32"]
    assert [m.label for m in auto.candidates(frozenset({"avx2", "amx_bf16"}))] == [*avx2, "torch-bf16"]
    assert all(TOLERANCES[label].max_abs <= 1e-5 for label in avx2)
