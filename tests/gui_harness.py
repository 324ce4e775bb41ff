"""What the window tests share: a window factory on a settings file of the test's own, and a recorder
of every frame packet the window receives."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.gui.settings import open_qsettings  # noqa: E402
from app.gui.window import MainWindow  # noqa: E402

START_S = 90  # first model load included, on a busy 2-core machine
PLAY_S = 120


class Recorder:
    """Every packet the window received, in order."""

    def __init__(self, window: MainWindow) -> None:
        self.packets = []
        window.worker.frame_ready.connect(self.packets.append)

    @property
    def indices(self) -> list[int]:
        return [p.index for p in self.packets]

    def after(self, count: int) -> list:
        return self.packets[count:]


@pytest.fixture
def make_window(qtbot, tmp_path):
    windows = []

    def make(settings_file: str = "settings.ini", **kwargs) -> MainWindow:
        kwargs.setdefault("open_picker_when_idle", False)
        store = open_qsettings(str(tmp_path / settings_file))
        if not store.contains("record_dir"):
            store.setValue("record_dir", str(tmp_path / "recordings"))
        window = MainWindow(store, **kwargs)
        qtbot.addWidget(window)
        window.resize(1100, 700)
        window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()


def wait_frames(qtbot, recorder: Recorder, count: int, timeout_s: float = PLAY_S) -> None:
    qtbot.waitUntil(lambda: len(recorder.packets) >= count, timeout=int(timeout_s * 1000))


def errors(window: MainWindow) -> list[str]:
    return [text for level, text in window.messages if level == "error"]

