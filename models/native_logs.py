"""Keep native libraries' log lines (MediaPipe's TFLite and absl messages) off the terminal.

MediaPipe's C++ side writes "Created TensorFlow Lite XNNPACK delegate for CPU", "All log
messages before absl::InitializeLog() ..." and "Feedback manager requires a model with a
single signature ..." straight to file descriptor 2 while a graph starts (on the graph's own
threads, during the first ``process``); neither GLOG_minloglevel nor TF_CPP_MIN_LOG_LEVEL
reaches them in mediapipe 0.10.21 (tried). So the graph is started inside
``quiet_native_logs``, which points descriptor 2 at /dev/null for that block only, unless
logging is at DEBUG level (``--verbose``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
