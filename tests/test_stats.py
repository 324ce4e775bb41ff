"""Moving latency statistics and the bench table."""
from __future__ import annotations

import numpy as np
import pytest

from app.stats import LatencyStats, StatsSummary, format_bench_table
from app.types import STAGES, StageTimings


def test_medians_and_p95_on_a_known_sequence() -> None:
    stats = LatencyStats(window=60)
    for i in range(1, 21):  # infer 1..20 ms, align constant 0.5 ms
        stats.add(StageTimings(align=0.5, infer=float(i)), frame_time=i / 20)
    s = stats.summary()
    assert s.frames == 20
    assert s.median_ms["infer"] == pytest.approx(10.5)
    assert s.p95_ms["infer"] == pytest.approx(np.percentile(np.arange(1, 21), 95)) == pytest.approx(19.05)
    assert s.median_ms["align"] == pytest.approx(0.5) and s.p95_ms["align"] == pytest.approx(0.5)
    assert s.total_median_ms == pytest.approx(11.0)
    assert s.total_p95_ms == pytest.approx(19.55)


def test_stages_are_summarised_over_the_frames_where_they_ran() -> None:
    stats = LatencyStats()
    for i in range(30):
        stats.add(StageTimings(detect=12.0 if i % 10 == 0 else 0.0, infer=5.0), frame_time=i / 30)
    s = stats.summary()
    assert s.runs["detect"] == 3 and s.runs["infer"] == 30
    assert s.median_ms["detect"] == pytest.approx(12.0)  # not 0: the median of the runs
    assert s.runs["smooth"] == 0 and s.median_ms["smooth"] is None and s.p95_ms["smooth"] is None
    assert s.total_median_ms == pytest.approx(5.0)  # end-to-end over every frame


def test_window_keeps_only_the_last_frames() -> None:
    stats = LatencyStats(window=10)
    for i in range(100):
        stats.add(StageTimings(infer=float(i + 1)), frame_time=i / 30)
    s = stats.summary()
    assert s.frames == 10
    assert s.median_ms["infer"] == pytest.approx(95.5)  # median of 91..100
    everything = LatencyStats(window=None)
    for i in range(100):
        everything.add(StageTimings(infer=float(i + 1)), frame_time=i / 30)
    assert everything.summary().frames == 100
    assert everything.summary().median_ms["infer"] == pytest.approx(50.5)


def test_fps_from_arrival_times() -> None:
    stats = LatencyStats(window=30)
    assert stats.summary().fps is None
    stats.add(StageTimings(), 10.0)
    assert stats.fps() is None  # one frame: no rate yet
    for i in range(1, 100):
        stats.add(StageTimings(), 10.0 + i / 25)
    assert stats.fps() == pytest.approx(25.0)
    # The rate moves with the window: slow down to 10 fps.
    t = 10.0 + 99 / 25
    for i in range(1, 31):
        stats.add(StageTimings(), t + i / 10)
    assert stats.fps() == pytest.approx(10.0)


def test_fps_with_irregular_and_repeated_times() -> None:
    stats = LatencyStats(window=5)
    for t in (0.0, 0.0):
        stats.add(StageTimings(), t)
    assert stats.fps() is None  # no time has passed
    for t in (0.1, 0.3, 0.4):
        stats.add(StageTimings(), t)
    assert stats.fps() == pytest.approx(4 / 0.4)
    stats.add(StageTimings(), 0.05)  # clock went back (source restarted): rate restarts
    assert stats.fps() is None
    assert len(stats) == 5  # latencies are kept


def test_bad_timings_are_rejected() -> None:
    stats = LatencyStats()
    with pytest.raises(ValueError, match="timings"):
        stats.add(StageTimings(infer=-1.0), 0.0)
    with pytest.raises(ValueError, match="frame_time"):
        stats.add(StageTimings(), float("nan"))
    with pytest.raises(ValueError, match="window"):
        LatencyStats(window=1)
    assert len(stats) == 0


def test_reset_empties_the_window() -> None:
    stats = LatencyStats()
    stats.add(StageTimings(infer=3.0), 0.0)
    stats.reset()
    s = stats.summary()
    assert s.frames == 0 and s.total_median_ms is None and s.fps is None


def test_summary_as_dict_round_trips_the_figures() -> None:
    stats = LatencyStats()
    for i in range(5):
        stats.add(StageTimings(infer=2.0), i / 10)
    d = stats.summary().as_dict()
    assert d["median_ms"]["infer"] == 2.0 and d["fps"] == pytest.approx(10.0)
    assert set(d["median_ms"]) == set(STAGES)


def _summary(infer: float, fps: float) -> StatsSummary:
    stats = LatencyStats(window=None)
    for i in range(20):
        stats.add(StageTimings(detect=8.0 if i == 0 else 0.0, align=0.3, infer=infer, decode=0.2), i / fps)
    return stats.summary()


def test_bench_table_for_one_configuration() -> None:
    table = format_bench_table(_summary(4.0, 50.0))
    lines = table.splitlines()
    assert lines[0].split("|")[1].strip() == "stage"
    assert "median ms" in lines[0] and "p95 ms" in lines[0]
    assert len({len(line) for line in lines}) == 1  # aligned columns
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines[2:]}
    assert rows["infer"] == ["4.00", "4.00"]
    assert rows["detect"] == ["8.00 (1/20)", "8.00"]
    assert rows["smooth"] == ["-", "-"]
    assert rows["FPS"][0] == "50.0"
    assert rows["end-to-end"][0] == "4.50"


def test_bench_table_compares_configurations() -> None:
    table = format_bench_table({"ort-cpu": _summary(9.0, 25.0), "tensorrt": _summary(1.5, 120.0)})
    header = table.splitlines()[0]
    assert "ort-cpu median ms" in header and "tensorrt p95 ms" in header
    fps_row = [c.strip() for c in table.splitlines()[-1].split("|")[1:-1]]
    assert fps_row[0] == "FPS" and fps_row[1] == "25.0" and fps_row[3] == "120.0"
    with pytest.raises(ValueError):
        format_bench_table({})
