"""What the window needs from the system before Qt starts, checked so that a failure says what to install.

On Linux, Qt's xcb platform plugin (an X11 desktop) loads a set of system libraries that a
bare or server install lacks (``libxcb-cursor0`` is the usual one); without them Qt dies
with "Could not load the Qt platform plugin xcb". ``window_libraries_problem`` tries to load
each library the plugin links (PySide6 6.11's ``libQt6XcbQpa.so``, read with ``ldd``) and
names the missing ones with their Debian/Ubuntu packages. Only when xcb will be the platform:
not offscreen, not Wayland.

Importing cv2 (the non-headless opencv wheels) points ``QT_QPA_PLATFORM_PLUGIN_PATH`` at
cv2's own Qt plugins, which PySide6's Qt must not load; ``drop_cv2_plugin_path`` removes it.
"""
from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path

# soname -> Debian/Ubuntu package
XCB_LIBRARIES = {
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
}


def qt_platform(env: Mapping[str, str]) -> str:
    """The platform plugin Qt will pick: ``QT_QPA_PLATFORM``, else wayland in a Wayland session, else xcb."""
    explicit = env.get("QT_QPA_PLATFORM", "").strip()
    if explicit:
        return explicit.split(";")[0].split(":")[0]
    if env.get("WAYLAND_DISPLAY") and env.get("XDG_SESSION_TYPE") == "wayland":
        return "wayland"
    return "xcb"


def missing_libraries(libraries: Mapping[str, str]) -> list[tuple[str, str]]:
    """(soname, package) of each library the dynamic loader cannot load."""
    missing = []
    for soname, package in libraries.items():
        try:
            ctypes.CDLL(soname)
        except OSError:
            missing.append((soname, package))
    return missing


def window_libraries_problem(
    env: Mapping[str, str] = os.environ, libraries: Mapping[str, str] = XCB_LIBRARIES
) -> str | None:
    """None when the window can start here, else a message naming what is missing and how to install it."""
    if not sys.platform.startswith("linux") or qt_platform(env) != "xcb":
        return None
    missing = missing_libraries(libraries)
    if not missing:
        return None
    names = ", ".join(soname for soname, _ in missing)
    packages = " ".join(sorted({package for _, package in missing}))
    return (
        f"the window needs system libraries that are missing here: {names}. "
        f"On Debian/Ubuntu: sudo apt-get install {packages} "
        "(or run headless with QT_QPA_PLATFORM=offscreen)"
    )


def drop_cv2_plugin_path(env: MutableMapping[str, str] = os.environ) -> None:
    """Remove ``QT_QPA_PLATFORM_PLUGIN_PATH`` when it points into cv2's package (a user's own value stays)."""
    import cv2

    value = env.get("QT_QPA_PLATFORM_PLUGIN_PATH")
    if value and Path(value).resolve().is_relative_to(Path(cv2.__file__).resolve().parent):
        del env["QT_QPA_PLATFORM_PLUGIN_PATH"]
