"""The 300-W .pts parser: real files, round trips, and every kind of malformed file."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.datasets import data_root
from models.pts import PtsFormatError, parse_pts, read_pts, write_pts

SAMPLE = data_root() / "300vw_sample"


def pts_text(points_1based: np.ndarray, declared: int | None = None) -> str:
    body = "\n".join(f"{x} {y}" for x, y in points_1based)
    n = len(points_1based) if declared is None else declared
    return f"version: 1\nn_points: {n}\n{{\n{body}\n}}\n"


def test_real_300vw_files_parse_to_68_zero_based_points():
    files = sorted(SAMPLE.glob("*/annot/*.pts"))
    assert len(files) == 4
    for path in files:
        points = read_pts(path)
        assert points.shape == (68, 2) and points.dtype == np.float64
        assert np.all(np.isfinite(points))
    # 401/000731.pts starts "354.326810 277.170196" on disk (1-based).
    first = read_pts(SAMPLE / "401/annot/000731.pts")[0]
    np.testing.assert_allclose(first, [353.32681, 276.170196])


def test_write_then_read_round_trip(tmp_path):
    points = np.random.default_rng(0).uniform(0, 500, (68, 2))
    write_pts(tmp_path / "a.pts", points)
    np.testing.assert_allclose(read_pts(tmp_path / "a.pts"), points, atol=5e-4)
    assert (tmp_path / "a.pts").read_text().splitlines()[1] == "n_points: 68"


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, (68, 2), elements=st.floats(-100, 5000, allow_nan=False)))
def test_parse_subtracts_one_from_any_coordinates(points):
    np.testing.assert_allclose(parse_pts(pts_text(points)), points - 1.0)


def test_tolerates_crlf_blank_lines_and_exponents():
    points = np.arange(136, dtype=float).reshape(68, 2) + 1
    text = pts_text(points).replace("\n", "\r\n\r\n").replace("1.0 2.0", "1e0 2E0")
    np.testing.assert_allclose(parse_pts(text), points - 1)


def test_other_point_counts_when_not_expecting_68():
    points = np.ones((5, 2))
    assert parse_pts(pts_text(points), expected=None).shape == (5, 2)


GOOD = pts_text(np.full((68, 2), 10.0))


@pytest.mark.parametrize(
    "text, message",
    [
        (pts_text(np.ones((67, 2)), declared=68), "n_points says 68 but 67 points are listed"),
        (pts_text(np.ones((66, 2))), "expected 68 points, found 66"),
        (GOOD.replace("10.0 10.0", "ten ten", 1), "point 1 is not two numbers: 'ten ten'"),
        (GOOD.replace("10.0 10.0", "10.0", 1), "point 1 is not two numbers"),
        (GOOD.replace("10.0 10.0", "10.0 10.0 10.0", 1), "point 1 is not two numbers"),
        (GOOD.replace("{\n", "", 1), "missing opening brace"),
        (GOOD.replace("}\n", "", 1), "missing closing brace"),
        (GOOD.replace("n_points: 68\n", ""), "no 'n_points:' line"),
        (GOOD.replace("10.0 10.0", "nan 10.0", 1), "non-finite"),
        ("", "no 'n_points:' line"),
    ],
    ids=["wrong-count", "66-points", "text", "one-number", "three-numbers", "no-open-brace",
         "no-close-brace", "no-n_points", "nan", "empty"],
)
def test_malformed_files_name_file_and_problem(tmp_path, text, message):
    path = tmp_path / "000001.pts"
    path.write_text(text)
    with pytest.raises(PtsFormatError) as error:
        read_pts(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_binary_file_is_a_format_error(tmp_path):
    path = tmp_path / "x.pts"
    path.write_bytes(b"\xff\xd8\xff\xe0 jpeg bytes \x00\x81")
    with pytest.raises(PtsFormatError, match="not a text file"):
        read_pts(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_pts(tmp_path / "absent.pts")
