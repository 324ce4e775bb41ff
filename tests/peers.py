"""Tests that need a package the core install leaves out (``peers``, ``train`` extras).

The core stack (``.venv-core``: ``pip install -e '.[dev,batch]'``, numpy 2, no mediapipe) runs
every test that needs none of them; the full stack (``.venv``, every extra) runs them all.

- A test (or a class) that needs ``mediapipe``, ``dlib``, ``torch`` ... inside its body carries
  ``@pytest.mark.peers("mediapipe")``; ``tests/conftest.py`` skips it where a named module does
  not import, and only then.
- A test file that imports such a module at its top calls ``require_peers("torch")`` before the
  import (and sets ``pytestmark = pytest.mark.peers("torch")``): the whole file is skipped there.

With ``FACETRACK_FULL_STACK=1`` (``make test``'s full venv) nothing is skipped: a missing module
fails the test (or the file's collection) instead, so the full stack cannot lose a test silently.
"""
from __future__ import annotations

import importlib.util
import os

import pytest

# Which extra brings each module (for the skip reason).
EXTRA_OF = {
    "mediapipe": "peers",
    "dlib": "peers",
    "face_recognition_models": "peers",
    "torch": "train",
    "nncf": "train",
    "tflite": "train",
    "scipy": "train",
}


def full_stack() -> bool:
    """True in ``make test``'s full venv, where every extra is installed and nothing may be skipped."""
    return os.environ.get("FACETRACK_FULL_STACK") == "1"


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """The modules of ``modules`` that cannot be found here."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def skip_reason(missing: list[str]) -> str:
    extras = sorted({EXTRA_OF.get(name, "peers") for name in missing})
    hint = " ".join(f"pip install -e '.[{extra}]'" for extra in extras)
    return f"needs {', '.join(missing)}, which this stack lacks (core install; {hint})"


def require_peers(*modules: str) -> None:
    """At a test file's top, before it imports ``modules``: skip the file where one is absent (the
    core stack). In the full stack a missing one is left to fail the import."""
    missing = missing_modules(modules)
    if missing and not full_stack():
        pytest.skip(skip_reason(missing), allow_module_level=True)


def need_peers(*modules: str) -> None:
    """Inside a fixture or test that needs ``modules``: skip where one is absent (the core stack),
    fail in the full stack (FACETRACK_FULL_STACK=1)."""
    missing = missing_modules(modules)
    if missing:
        if full_stack():
            pytest.fail(f"{skip_reason(missing)}; the full stack must have every extra")
        pytest.skip(skip_reason(missing))
