"""The face geometry in the window (real Qt offscreen, the real worker and model): the panel for the
selected face and the overlay toggles for the pose axes and the readout."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.gui.settings import open_qsettings  # noqa: E402
from app.gui.widgets.geometry_panel import GeometryPanel  # noqa: E402
from app.gui.window import MainWindow  # noqa: E402
from app.overlay import OverlayOptions  # noqa: E402
from app.types import FaceGeometry, HeadPose  # noqa: E402

START_S = 90  # first model load included, on a busy 2-core machine


def _geometry(yaw: float, blinks: int, closed: bool = False) -> FaceGeometry:
    pose = HeadPose(yaw, -4.0, 2.5, np.eye(3), np.array([0.0, 0.0, 600.0]), np.eye(3), 0.05)
    return FaceGeometry(pose, 0.31, 0.29, 0.12, eyes_closed=closed, blink_count=blinks)


def test_geometry_panel_follows_the_selected_face(qtbot):
    panel = GeometryPanel()
    qtbot.addWidget(panel)
    panel.show_faces(((1, _geometry(10.0, 3)), (2, _geometry(-20.0, 5, closed=True))))
    assert [panel.face_combo.itemText(i) for i in range(panel.face_combo.count())] == ["face 1", "face 2"]
    assert panel.pose_label.text() == "+10.0° / -4.0° / +2.5°"
    assert panel.eyes_label.text() == "0.31 / 0.29" and panel.mouth_label.text() == "0.12"
    assert panel.blinks_label.text() == "3"
    panel.face_combo.setCurrentIndex(1)
    panel.show_faces(((2, _geometry(-21.0, 5, closed=True)), (1, _geometry(11.0, 3))))
    assert panel.selected_face() == 2 and panel.pose_label.text().startswith("-21.0°")
    assert panel.blinks_label.text() == "5 · eyes closed"
    lost = FaceGeometry(None, float("nan"), 0.3, float("nan"))
    panel.show_faces(((2, lost),))
    assert panel.pose_label.text() == "no pose" and panel.eyes_label.text() == "– / 0.30"
    assert panel.mouth_label.text() == "–"
    panel.show_faces(((1, None),))  # face 2 gone, face 1 without geometry (geometry switched off)
    assert panel.selected_face() == 1 and panel.pose_label.text() == "–"
    panel.show_faces(())
    assert panel.selected_face() is None and panel.blinks_label.text() == "–"


@pytest.fixture
def window(qtbot, tmp_path):
    store = open_qsettings(str(tmp_path / "settings.ini"))
    store.setValue("record_dir", str(tmp_path / "recordings"))
    window = MainWindow(store, open_picker_when_idle=False)
    qtbot.addWidget(window)
    window.resize(1100, 760)
    window.show()
    yield window
    window.close()


def test_window_shows_the_geometry_and_toggles_axes_and_readout(qtbot, window, talking_clip, tmp_path):
    packets = []
    window.worker.frame_ready.connect(packets.append)
    boxes = window.overlay_panel.boxes
    assert boxes["pose_axes"].isChecked() and not boxes["geometry_readout"].isChecked()  # the defaults
    for layer in ("points", "contours", "face_ids", "stats_panel", "pose_axes"):
        boxes[layer].setChecked(False)
    window.open_video(talking_clip, play=False)
    qtbot.waitUntil(lambda: len(packets) >= 1, timeout=START_S * 1000)
    (track_id, geometry), = packets[-1].geometry
    assert geometry is not None and geometry.pose is not None
    qtbot.waitUntil(lambda: window.geometry_panel.selected_face() == track_id, timeout=10000)
    assert window.geometry_panel.pose_label.text() == (
        f"{geometry.pose.yaw:+.1f}° / {geometry.pose.pitch:+.1f}° / {geometry.pose.roll:+.1f}°"
    )
    assert window.geometry_panel.blinks_label.text() == str(geometry.blink_count)

    def shown(layer: str) -> np.ndarray:
        count = len(packets)
        boxes[layer].setChecked(True)
        window.seek(0)
        qtbot.waitUntil(lambda: len(packets) > count, timeout=20000)
        boxes[layer].setChecked(False)
        return _pixels(packets[-1].image)

    bare = _pixels(packets[-1].image)
    for layer in ("pose_axes", "geometry_readout"):
        drawn = shown(layer)
        assert drawn.shape == bare.shape and np.count_nonzero(np.any(drawn != bare, axis=2)) > 200, layer
    assert window.overlay_panel.overlay() == OverlayOptions(
        points=False, contours=False, face_ids=False, stats_panel=False, pose_axes=False
    )


def _pixels(image) -> np.ndarray:
    array = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)
    return array[:, : image.width(), :3].copy()
