"""Shared fixtures. The shared data (../shared/data or $FACETRACK_DATA) is required, never skipped."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import pytest

from models.datasets import data_root, detector_model_dir

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def pytest_runtest_setup(item) -> None:
    """``@pytest.mark.peers("mediapipe", ...)``: skipped only where a named module is absent (the
    core stack); with FACETRACK_FULL_STACK=1 (the full stack) a missing one fails (tests/peers.py)."""
    from tests.peers import need_peers

    for marker in item.iter_markers(name="peers"):
        need_peers(*marker.args)


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory) -> Path:
    """Every cache the tests make goes to one folder of this session, removed at its end.

    ``$FACETRACK_CACHE`` points there for the whole session (subprocesses inherit it), so the
    training tests' crop caches (about 3.7 GB: every training image at both networks' crop
    sizes) and any engine cache never land in the user's ``~/.cache/facetrack``.
    """
    folder = tmp_path_factory.mktemp("facetrack_cache")
    previous = os.environ.get("FACETRACK_CACHE")
    os.environ["FACETRACK_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("FACETRACK_CACHE", None)
    else:
        os.environ["FACETRACK_CACHE"] = previous
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = data_root()
    assert root.is_dir(), f"shared data not found at {root}: set FACETRACK_DATA"
    return root


@pytest.fixture(scope="session")
def detectors_dir() -> Path:
    path = detector_model_dir()
    assert path.is_dir(), f"shared detector models not found at {path}"
    return path


@pytest.fixture(scope="session")
def talking_clip(data_dir: Path) -> Path:
    return data_dir / "videos" / "talking_d12.mp4"


@pytest.fixture(scope="session")
def helen_test_dir(data_dir: Path) -> Path:
    return data_dir / "300w" / "helen_test"


def read_image(path: Path):
    image = cv2.imread(str(path))
    assert image is not None, f"could not read {path}"
    return image


def truncated_mjpg(source: Path, path: Path, keep: float, fps: float = 30.0, max_frames: int | None = None) -> Path:
    """Re-encode ``source`` (512x512 clips) as an MJPG ``.avi`` at ``path`` (all frames, or the first
    ``max_frames``), then cut the file to ``keep`` of its bytes, as a copy interrupted mid-write."""
    capture = cv2.VideoCapture(str(source))
    writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps, (512, 512))
    written = 0
    while (max_frames is None or written < max_frames) and (frame := capture.read()[1]) is not None:
        writer.write(frame)
        written += 1
    writer.release()
    capture.release()
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
