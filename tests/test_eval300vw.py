"""The 300-VW runner: real clips (imgs layout), synthetic clips, broken folders, resuming."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.eval import vw_splits
from app.eval.vw300.clips import read_unreliable
from app.eval.vw300.config import EvalConfig
from app.eval.vw300.measures import LAG_GRID, error_jitter, lag_cost, lag_from_costs
from app.eval.vw300.run import evaluate
from app.pipeline import build_pipeline
from app.synth.clips import SynthSettings, make_clips
from tests.peers import need_peers


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def pipeline():
    need_peers("mediapipe")  # the model is mediapipe68
    with build_pipeline(EvalConfig(model="mediapipe68").pipeline_spec()) as p:
        yield p


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory, helen_test_dir) -> Path:
    """One moving and one static synthetic clip of 12 frames."""
    root = tmp_path_factory.mktemp("synth")
    make_clips(helen_test_dir, root, count=1, settings=SynthSettings(frames=12), seed=5, progress=False)
    make_clips(helen_test_dir, root, count=1, settings=SynthSettings(frames=12, static=True), seed=5, progress=False)
    return root


def test_splits_are_the_standard_300vw_ones(data_dir):
    assert [len(vw_splits.SPLITS[k]) for k in ("train", "A", "B", "C")] == [50, 31, 19, 14]
    listed = {}
    for line in (data_dir / "300vw_splits.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, ids = line.split(":")
            listed[name.strip()] = tuple(ids.split())
    assert listed == vw_splits.SPLITS
    assert len({c for clips in vw_splits.SPLITS.values() for c in clips}) == 114
    assert vw_splits.category_of("401") == "A" and vw_splits.category_of("001") == "train"
    assert vw_splits.category_of("synth_000") == vw_splits.OTHER


def test_error_jitter_ignores_true_motion():
    rng = np.random.default_rng(0)
    gt = np.cumsum(rng.normal(0, 5, (6, 1, 2)), axis=0) + rng.uniform(0, 100, (1, 68, 2))
    gt[:, 45] = gt[:, 36] + [60.0, 0.0]  # inter-ocular 60 px
    pairs = np.array([False, True, True, True, True, True])
    offset = rng.normal(0, 2, (68, 2))
    assert np.allclose(error_jitter(gt + offset, gt, pairs)[1:], 0.0)  # a constant error: no jitter
    shaken = gt + offset
    shaken[3] += [3.0, 4.0]  # one frame off by 5 px: two pairs change by 5/60
    jit = error_jitter(shaken, gt, pairs)
    assert np.isnan(jit[0]) and np.allclose(jit[[3, 4]], 5 / 60) and np.allclose(jit[[1, 2, 5]], 0)


@pytest.mark.parametrize("delay", [0.0, 1.0, 1.5, 3.25])
def test_lag_estimate_recovers_a_known_delay(delay):
    t = np.arange(90, dtype=float)
    base = np.random.default_rng(1).uniform(0, 200, (68, 2))

    def track(times):
        return base[None] + np.stack([40 * np.sin(times / 9.0), 25 * np.cos(times / 13.0)], axis=1)[:, None, :]

    raw = track(t)
    shown = track(t - delay)
    scored = np.ones(len(t), bool)
    scored[[40, 70]] = False  # holes (a miss: no points), frames around them are not used
    raw[[40, 70]] = shown[[40, 70]] = np.nan
    sums, n = lag_cost(shown, raw, scored, np.full(len(t), 60.0))
    assert np.all(np.isfinite(sums)) and n == 90 - 9 - 2 * 10
    assert lag_from_costs([(sums, n)]) == pytest.approx(delay, abs=0.051)
    assert lag_from_costs([([0.0] * len(LAG_GRID), 0)]) is None


def test_the_command_line_pipeline_options_reach_eval300vw_through_one_spec():
    """``eval300vw``'s settings come from the same ``spec_from_args`` as track's pipeline, and give
    back the same pipeline (issue 32: one place reads the options, one function builds)."""
    from dataclasses import replace

    from app.cli.commands import build_parser
    from app.cli.pipeline_args import spec_from_args
    from app.eval.vw300.command import config_from_args

    args = build_parser().parse_args([
        "eval300vw", "root", "--model", "mnv2_sdd@int8", "--backend", "ort-cpu", "--precision", "fp32",
        "--detector", "mtcnn", "--no-smooth", "--min-cutoff", "0.7", "--beta", "3", "--redetect-interval", "5",
        "--detect-every-frame", "--max-faces", "2", "--boxes", "gt"])
    config = config_from_args(args)
    assert (config.model, config.backend, config.precision, config.detector, config.boxes) == (
        "mnv2_sdd@int8", "ort-cpu", "fp32", "mtcnn", "gt")
    assert (config.smoothing, config.min_cutoff, config.beta) == (False, 0.7, 3.0)
    assert (config.detect_every_frame, config.redetect_interval, config.max_faces) == (True, 5, 2)
    spec = spec_from_args(args)
    assert config.pipeline_spec() == replace(spec, options=replace(spec.options, geometry=config.pipeline_options().geometry))
    assert EvalConfig.from_spec(config.pipeline_spec(), boxes="gt") == config


def test_unreliable_list(tmp_path):
    path = tmp_path / "unreliable.txt"
    path.write_text("# clip frames\n401 732\n001 1-3, 9 # trailing comment\n\n")
    assert read_unreliable(path) == {"401": {732}, "001": {1, 2, 3, 9}}
    path.write_text("401 seven\n")
    with pytest.raises(ValueError, match="unreliable.txt:1"):
        read_unreliable(path)


def test_real_300vw_sample(data_dir, tmp_path, pipeline):
    """Both sample clips (imgs layout, frames with gaps) with the real detector and mediapipe68."""
    unreliable = tmp_path / "unreliable.txt"
    unreliable.write_text("401 732\n")
    report = evaluate(data_dir / "300vw_sample", EvalConfig(), tmp_path / "run", pipeline=pipeline,
                      unreliable_file=unreliable)  # fmt: skip
    clips = {c.clip: c for c in report.clips}
    assert set(clips) == {"001", "401"}
    assert clips["001"].category == "train" and clips["401"].category == "A"
    assert clips["001"].frames == 2 and clips["001"].scored == 2 and clips["001"].misses == 0
    assert clips["401"].scored == 1 and clips["401"].unreliable == 1
    assert all(c.error is None and not c.problems for c in clips.values())
    for c in clips.values():
        assert 0.005 < c.nme68 < 0.10 and 0.005 < c.nme49 < 0.10
    assert clips["001"].jitter_pairs == 0  # frames 6 and 9 are not consecutive
    assert [s.category for s in report.categories] == ["train", "A", "overall"]
    overall = report.categories[-1]
    assert overall.scored == 3 and overall.unreliable == 1 and 0 < overall.auc68 < 1 and overall.fr68 == 0
    rows = read_csv(tmp_path / "run" / "frames.csv")
    assert [(r["clip"], r["frame"], r["status"]) for r in rows] == [
        ("001", "6", "ok"), ("001", "9", "ok"), ("401", "731", "ok"), ("401", "732", "unreliable"),
    ]  # fmt: skip
    assert rows[0]["detector_ran"] == "1" and float(rows[0]["detect_ms"]) > 0
    text = (tmp_path / "run" / "report.md").read_text()
    assert "boxes from the auto detector" in text and "tracking mode" in text
    for name in ("ced_A.png", "ced_train.png", "ced_overall.png", "clips.csv", "categories.csv"):
        assert (tmp_path / "run" / name).stat().st_size > 0


def test_ground_truth_boxes(data_dir, tmp_path, pipeline):
    report = evaluate(data_dir / "300vw_sample", EvalConfig(boxes="gt"), tmp_path, clips=["401"], pipeline=pipeline)
    [clip] = report.clips
    assert clip.scored == 2 and clip.misses == 0 and clip.detector_runs == 0 and clip.nme68 < 0.10
    assert "ground truth (oracle)" in (tmp_path / "report.md").read_text()


def test_category_filter_reports_missing_clips(data_dir, tmp_path, pipeline):
    report = evaluate(data_dir / "300vw_sample", EvalConfig(), tmp_path, category="A", pipeline=pipeline)
    assert [c.clip for c in report.clips] == ["401"]
    assert len(report.missing_clips) == 30 and "114" in report.missing_clips
    assert "114: asked for, but not in" in (tmp_path / "report.md").read_text()


def test_synthetic_clips(synth_root, tmp_path, pipeline):
    report = evaluate(synth_root, EvalConfig(), tmp_path / "track", pipeline=pipeline)
    clips = {c.clip: c for c in report.clips}
    assert set(clips) == {"synth_000", "static_000"}
    assert [s.category for s in report.categories] == [vw_splits.OTHER]
    for c in clips.values():
        assert c.frames == 12 and c.scored == 12 and c.misses == 0 and c.nme68 < 0.08
        assert c.jitter_pairs == 11 and np.isfinite(c.jitter) and np.isfinite(c.jitter_raw)
    static = clips["static_000"]
    assert static.jitter < static.jitter_raw  # the One Euro filter calms a still face
    assert clips["synth_000"].lag_frames is not None and clips["synth_000"].detector_runs < 12

    detect = evaluate(synth_root, EvalConfig(detect_every_frame=True, smoothing=False), tmp_path / "detect",
                      pipeline=pipeline)  # fmt: skip
    for c in detect.clips:
        assert c.detector_runs == 12 and c.jitter == pytest.approx(c.jitter_raw) and c.lag_frames == 0.0
    assert "detection mode" in (tmp_path / "detect" / "report.md").read_text()


def test_malformed_annotation_folders(synth_root, tmp_path, pipeline):
    """Missing frames, a wrong point count, junk, a clip without video or without annotations: reported, no crash."""
    root = tmp_path / "root"
    good = synth_root / "synth_000"
    for name in ("gaps", "points", "noannot"):
        shutil.copytree(good, root / name)
    for number in (3, 4):
        (root / "gaps" / "annot" / f"{number:06d}.pts").unlink()
    five = root / "points" / "annot" / "000005.pts"
    lines = five.read_text().splitlines()
    five.write_text("\n".join([lines[0], "n_points: 67", "{", *lines[3:-2], "}"]) + "\n")
    (root / "points" / "annot" / "000002.pts").write_bytes(b"\x00\xff\x00 not a pts file")
    (root / "points" / "annot" / "notes.pts").write_text("hello")
    shutil.copytree(good / "annot", root / "novideo" / "annot")
    shutil.rmtree(root / "noannot" / "annot")
    (root / "noimages" / "imgs").mkdir(parents=True)
    (root / "noimages" / "annot").mkdir()

    report = evaluate(root, EvalConfig(), tmp_path / "run", pipeline=pipeline)
    clips = {c.clip: c for c in report.clips}
    assert set(clips) == {"gaps", "points", "noannot", "novideo", "noimages"}
    gaps, points = clips["gaps"], clips["points"]
    assert gaps.error is None and gaps.no_annotation == 2 and gaps.scored == 10
    assert any("000003.pts" in p for p in gaps.problems) and any("000004.pts" in p for p in gaps.problems)
    assert points.error is None and points.no_annotation == 2 and points.scored == 10
    assert any("000005.pts" in p and "67" in p for p in points.problems)
    assert any("000002.pts" in p for p in points.problems) and any("notes.pts" in p for p in points.problems)
    for name in ("noannot", "novideo", "noimages"):
        assert clips[name].error, name
    text = (tmp_path / "run" / "report.md").read_text()
    for needle in ("000003.pts", "000005.pts", "000002.pts", "notes.pts", "novideo: not evaluated",
                   "noannot: not evaluated", "noimages: not evaluated"):  # fmt: skip
        assert needle in text, needle
    rows = read_csv(tmp_path / "run" / "frames.csv")
    assert [r["status"] for r in rows if r["clip"] == "gaps"].count("no_annotation") == 2
    assert report.categories[0].scored == 20


class InterruptingPipeline:
    """The real pipeline, interrupted (like Ctrl+C) on the n-th frame it is given."""

    def __init__(self, real, interrupt_at: int):
        self.real, self.calls, self.interrupt_at = real, 0, interrupt_at

    def process(self, frame, detections=None):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        return self.real.process(frame, detections)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_an_interrupted_run_resumes(synth_root, tmp_path, pipeline):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        evaluate(synth_root, EvalConfig(), out, pipeline=InterruptingPipeline(pipeline, interrupt_at=18))
    done = sorted(p.name for p in (out / "clips").glob("*.json"))
    assert done == ["static_000.json"]  # the first clip (12 frames) finished, the second did not
    stamp = (out / "clips" / "static_000.csv").stat().st_mtime_ns
    counting = InterruptingPipeline(pipeline, interrupt_at=-1)
    report = evaluate(synth_root, EvalConfig(), out, pipeline=counting)
    assert report.resumed == ["static_000"] and counting.calls == 12
    assert (out / "clips" / "static_000.csv").stat().st_mtime_ns == stamp
    assert {c.clip: c.scored for c in report.clips} == {"static_000": 12, "synth_000": 12}
    again = evaluate(synth_root, EvalConfig(smoothing=False), out, pipeline=counting)
    assert again.resumed == [] and counting.calls == 36  # other settings: nothing reused
    assert json.loads((out / "clips" / "synth_000.json").read_text())["config"]["smoothing"] is False


@pytest.mark.peers("mediapipe")  # EvalConfig's default model is mediapipe68
def test_an_annotation_problem_is_reported_once(synth_root, tmp_path, caplog):
    """With its own pipeline (warmed up on the first clip) the runner used to open the first clip
    twice and add its own line: the same first annotation problem came out three times."""
    root = tmp_path / "root"
    shutil.copytree(synth_root / "synth_000", root / "gaps")
    (root / "gaps" / "annot" / "000003.pts").unlink()
    said: list[str] = []
    with caplog.at_level("WARNING"):
        report = evaluate(root, EvalConfig(), tmp_path / "run", say=said.append)
    messages = [r.getMessage() for r in caplog.records] + said
    assert len([m for m in messages if "000003.pts" in m]) == 1, messages
    assert report.clips[0].no_annotation == 1 and "000003.pts" in (tmp_path / "run" / "report.md").read_text()


def test_the_window_scores_a_frame_as_eval300vw_does(synth_root, tmp_path, pipeline):
    """One matcher (``app.tracking.pick_face``) and the same points: the window's per-frame NME
    (``app.gui.worker.best_match_nme``) equals eval300vw's ``nme68`` of the same frames."""
    from app.gui.worker import best_match_nme
    from app.sources import Clip300VWSource

    clip = sorted(p for p in synth_root.iterdir() if p.is_dir())[0]
    evaluate(synth_root, EvalConfig(), tmp_path / "run", clips=[clip.name], pipeline=pipeline)
    scored = {int(r["frame"]): float(r["nme68"]) for r in read_csv(tmp_path / "run" / "frames.csv")
              if r["status"] == "ok"}
    pipeline.reset()
    window = {}
    with Clip300VWSource(clip) as source:
        for frame in source:
            faces = pipeline.process(frame).faces
            window[source.frame_number(frame.index)] = best_match_nme(faces, frame.ground_truth)
    assert len(scored) >= 10
    assert all(window[n] == pytest.approx(e, abs=1e-6) for n, e in scored.items())


def test_every_clip_unreadable_is_an_error_exit(tmp_path):
    """A root whose only clip cannot be read: exit 2 (the README's "unreadable input"), not 1."""
    from app.cli import main

    clip = tmp_path / "root" / "001"
    (clip / "annot").mkdir(parents=True)
    (clip / "vid.avi").write_bytes(b"not a video")
    (clip / "annot" / "000001.pts").write_text("version: 1\nn_points: 68\n{\n" + "1 1\n" * 68 + "}\n")
    assert main(["eval300vw", str(tmp_path / "root"), "--model", "r18_ffld", "--no-progress",
                 "--out", str(tmp_path / "out")]) == 2
