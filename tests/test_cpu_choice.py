"""engines.cpu_choice: "auto" on a CPU-only machine runs the fastest allowed CPU back-end and
precision, measured once per machine and file, on the shipped r18_ffld files."""
from __future__ import annotations

import json

import pytest

from engines import cpu_choice
from engines.base import Backend
from engines.precision import Precision
from engines.select import _open, open_runner
from models.manifest import load_manifest
from models.registry import ASSETS_DIR

MANIFEST = load_manifest(ASSETS_DIR / "r18_ffld.json")


def _opener(opened):
    def open_candidate(candidate):
        opened.append(candidate.name)
        return _open(candidate.backend, candidate.path, None, None, 8, 1, None)
    return open_candidate


def test_the_fastest_candidate_is_chosen_and_the_figures_are_cached(tmp_path):
    options = cpu_choice.candidates(MANIFEST.onnx_path, MANIFEST.int8_path, True, True)
    assert [c.name for c in options] == ["ort-cpu/fp32", "ort-cpu/int8", "openvino/fp32"]
    opened = []
    first = cpu_choice.choose(options, _opener(opened), 1, tmp_path)
    assert first.measured and opened == [c.name for c in options]
    assert set(first.median_ms) == set(opened) and all(ms > 0 for ms in first.median_ms.values())
    assert first.median_ms[f"{first.backend.value}/{first.precision.value}"] == min(first.median_ms.values())
    cached = json.loads((tmp_path / cpu_choice.CACHE_FILE).read_text())
    (entry,) = cached.values()
    assert entry["median_ms"] == first.median_ms
    again = cpu_choice.choose(options, _opener(opened), 1, tmp_path)
    assert not again.measured and len(opened) == 3 and (again.backend, again.precision) == (first.backend, first.precision)
    assert "is the fastest here" in again.describe("r18_ffld") and "measured earlier" in again.describe("r18_ffld")


def test_openvino_int8_is_a_candidate_when_the_model_ships_it_within_its_bar():
    assert MANIFEST.openvino_int8 is not None and MANIFEST.openvino_int8.cpu_default
    names = [c.name for c in cpu_choice.candidates(MANIFEST.onnx_path, MANIFEST.int8_path, True, True,
                                                   MANIFEST.openvino_int8_path, True)]
    assert names == ["ort-cpu/fp32", "ort-cpu/int8", "openvino/fp32", "openvino/int8"]
    names = [c.name for c in cpu_choice.candidates(MANIFEST.onnx_path, None, False, True,
                                                   MANIFEST.openvino_int8_path, False)]
    assert names == ["ort-cpu/fp32", "openvino/fp32"]
    # without OpenVINO installed, its IR is no candidate
    assert [c.name for c in cpu_choice.candidates(MANIFEST.onnx_path, None, False, False,
                                                  MANIFEST.openvino_int8_path, True)] == ["ort-cpu/fp32"]


def test_int8_is_a_candidate_only_when_the_model_allows_it(tmp_path):
    names = [c.name for c in cpu_choice.candidates(MANIFEST.onnx_path, MANIFEST.int8_path, False, True)]
    assert names == ["ort-cpu/fp32", "openvino/fp32"]
    assert cpu_choice.candidates(MANIFEST.onnx_path, None, True, False) == [
        cpu_choice.Candidate(Backend.ORT_CPU, Precision.FP32, MANIFEST.onnx_path)]


def test_nothing_to_choose_or_turned_off_leaves_the_fixed_order(tmp_path, monkeypatch):
    one = cpu_choice.candidates(MANIFEST.onnx_path, None, False, False)
    assert cpu_choice.choose(one, _opener([]), 1, tmp_path) is None
    monkeypatch.setenv("FACETRACK_CPU_CHOICE", "fixed")
    options = cpu_choice.candidates(MANIFEST.onnx_path, MANIFEST.int8_path, True, True)
    assert cpu_choice.choose(options, _opener([]), 1, tmp_path) is None


def test_a_candidate_that_cannot_open_is_not_chosen(tmp_path):
    options = cpu_choice.candidates(MANIFEST.onnx_path, MANIFEST.int8_path, True, True)

    def open_candidate(candidate):
        if candidate.backend is Backend.OPENVINO:
            raise RuntimeError("broken")
        return _open(candidate.backend, candidate.path, None, None, 8, 1, None)

    choice = cpu_choice.choose(options, open_candidate, 1, tmp_path)
    assert set(choice.median_ms) == {"ort-cpu/fp32", "ort-cpu/int8"} and choice.backend is Backend.ORT_CPU


def test_open_runner_auto_runs_the_measured_choice(tmp_path):
    with open_runner(MANIFEST.onnx_path, "auto", precision="auto", int8_path=MANIFEST.int8_path, int8_default=True,
                     choose_cpu=True, cache_root=tmp_path, threads=1) as runner:
        choice = runner.choice
        assert choice is not None and (runner.backend, runner.precision) == (choice.backend, choice.precision.value)
    with open_runner(MANIFEST.onnx_path, "ort-cpu", precision="auto", int8_path=MANIFEST.int8_path,
                     int8_default=True, choose_cpu=True, cache_root=tmp_path) as runner:
        assert runner.choice is None and runner.precision == "int8"  # an explicit back-end is not measured


@pytest.mark.parametrize("busy_then", [True, False])
def test_figures_taken_on_a_busy_machine_are_measured_again_when_it_is_quiet(tmp_path, monkeypatch, busy_then):
    options = cpu_choice.candidates(MANIFEST.onnx_path, None, False, True)
    monkeypatch.setattr(cpu_choice, "_load", lambda: 100.0 if busy_then else 0.0)
    cpu_choice.choose(options, _opener([]), 1, tmp_path)
    monkeypatch.setattr(cpu_choice, "_load", lambda: 0.0)
    opened = []
    again = cpu_choice.choose(options, _opener(opened), 1, tmp_path)
    assert again.measured is busy_then and len(opened) == (2 if busy_then else 0)


def test_a_batch_worker_takes_the_choice_track_made(tmp_path, monkeypatch):
    """``$FACETRACK_ORT_THREADS`` (one thread per batch worker) does not change the cache key: the
    worker runs what ``track`` runs here, so batch and track give the same landmarks."""
    from engines.ort import THREADS_ENV

    for threads in (None, "1"):  # track, then a batch worker
        if threads:
            monkeypatch.setenv(THREADS_ENV, threads)
        with open_runner(MANIFEST.onnx_path, "auto", precision="auto", int8_path=MANIFEST.int8_path,
                         int8_default=True, choose_cpu=True, cache_root=tmp_path) as runner:
            assert runner.choice is not None
    keys = list(json.loads((tmp_path / cpu_choice.CACHE_FILE).read_text()))
    assert len(keys) == 1, keys  # one entry: the worker looked up track's figures
