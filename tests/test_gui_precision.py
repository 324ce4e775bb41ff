"""The window's precision choice (real Qt offscreen, real worker and models): only what the chosen
back-end and the installed files support is enabled, and an impossible pair falls back with a message."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from tests.peers import full_stack, missing_modules  # noqa: E402
from tests.gui_harness import START_S, Recorder, errors, make_window, wait_frames  # noqa: E402,F401


def _item(combo, value):
    return combo.model().item(combo.findData(value))


def test_precisions_follow_the_backend_and_the_installed_files(qtbot, make_window):  # noqa: F811
    window = make_window(model="r18_ffld", backend="ort-cpu")
    qtbot.waitUntil(lambda: window.environment is not None, timeout=START_S * 1000)
    panel, combo = window.model_panel, window.model_panel.precision_combo
    panel.select_backend("ort-cpu")
    assert combo.isEnabled()
    assert _item(combo, "int8").isEnabled() and _item(combo, "fp32").isEnabled()
    assert not _item(combo, "fp16").isEnabled()
    assert "no fast FP16 kernels" in _item(combo, "fp16").toolTip()

    combo.setCurrentIndex(combo.findData("int8"))
    assert panel.requested_model() == "r18_ffld@int8"
    panel.select_backend("tensorrt")  # TensorRT cannot run INT8 yet: back to Auto, with the reason shown
    assert not _item(combo, "int8").isEnabled() and "not built yet" in _item(combo, "int8").toolTip()
    assert panel.precision() == "auto" and panel.requested_model() == "r18_ffld"

    if full_stack() or not missing_modules(("mediapipe",)):  # mediapipe68: the peers extra (not in the core stack)
        panel.model_combo.setCurrentIndex(panel.model_combo.findData("mediapipe68"))
        assert not combo.isEnabled() and "own float model" in combo.toolTip()


def test_int8_on_tensorrt_falls_back_with_a_message_and_keeps_tracking(qtbot, make_window, talking_clip):  # noqa: F811
    window = make_window(model="r18_ffld@int8", backend="tensorrt", max_speed=True)
    recorder = Recorder(window)
    window.open_video(talking_clip)
    wait_frames(qtbot, recorder, 10)
    assert errors(window) == []
    assert any("cannot run int8" in text and "default precision instead" in text for _, text in window.messages)
    tracked = [p for p in recorder.packets if p.tracked]
    assert len(tracked) == len(recorder.packets) and sum(p.faces >= 1 for p in tracked) >= 8
    assert window.model_panel.model() == "r18_ffld"
