"""Starting the window: the system-library check, cv2's Qt plugin path, and run_app.py itself (offscreen)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2

from app.gui import main as gui_main
from app.gui.system_libs import XCB_LIBRARIES, drop_cv2_plugin_path, qt_platform, window_libraries_problem

REPO = Path(__file__).resolve().parent.parent
PRESENT = {"libc.so.6": "libc6"}  # loads on every Linux
FAKE = {"libfacetrack-absent.so.7": "facetrack-absent7"}


def test_missing_libraries_are_named_with_their_packages_when_xcb_will_be_used():
    problem = window_libraries_problem({"DISPLAY": ":0"}, {**PRESENT, **FAKE})
    assert problem.startswith("the window needs system libraries that are missing here: libfacetrack-absent.so.7.")
    assert "sudo apt-get install facetrack-absent7 " in problem and "libc" not in problem
    assert window_libraries_problem({"DISPLAY": ":0"}, PRESENT) is None


def test_no_check_when_the_platform_is_not_xcb():
    for env in ({"QT_QPA_PLATFORM": "offscreen"}, {"QT_QPA_PLATFORM": "wayland;xcb"},
                {"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}):
        assert qt_platform(env) != "xcb"
        assert window_libraries_problem(env, FAKE) is None
    assert qt_platform({"DISPLAY": ":0"}) == qt_platform({"QT_QPA_PLATFORM": "xcb:dpi=96"}) == "xcb"


def test_every_listed_library_has_a_debian_package_name():
    assert all(name.startswith("lib") and ".so." in name and package for name, package in XCB_LIBRARIES.items())


def test_main_refuses_to_start_and_says_what_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(gui_main, "window_libraries_problem",
                        lambda: window_libraries_problem(os.environ, {**PRESENT, **FAKE}))
    assert gui_main.main(["run_app.py", "--settings", str(tmp_path / "s.ini")]) == 2
    assert "libfacetrack-absent.so.7" in capsys.readouterr().err


def test_cv2s_plugin_path_is_dropped_and_a_users_own_is_kept():
    cv2_plugins = str(Path(cv2.__file__).parent / "qt" / "plugins")
    env = {"QT_QPA_PLATFORM_PLUGIN_PATH": cv2_plugins}
    drop_cv2_plugin_path(env)
    assert "QT_QPA_PLATFORM_PLUGIN_PATH" not in env
    env = {"QT_QPA_PLATFORM_PLUGIN_PATH": "/opt/my/qt/plugins"}
    drop_cv2_plugin_path(env)
    assert env == {"QT_QPA_PLATFORM_PLUGIN_PATH": "/opt/my/qt/plugins"}


def test_run_app_starts_offscreen_and_sigterm_closes_it_cleanly(tmp_path, talking_clip):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    child = subprocess.Popen(
        [sys.executable, "run_app.py", str(talking_clip), "--settings", str(tmp_path / "s.ini")],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(8)  # the window is up and the model loading or loaded
    assert child.poll() is None, child.communicate()
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert "Could not load the Qt platform plugin" not in err and "Traceback" not in err
    assert (tmp_path / "s.ini").is_file()  # closed the normal way: the settings were saved
