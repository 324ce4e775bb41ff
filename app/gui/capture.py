"""Latest-frame capture for live sources: a thread reads the camera and keeps only the newest frame.

The worker takes frames when it is ready for one; frames that arrived meanwhile are
dropped (and counted), so a slow model never builds a queue and the latency stays
bounded by one frame interval plus the processing time.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from app.sources import FrameSource, SourceError
from app.types import Frame

log = logging.getLogger(__name__)


class LatestFrameGrabber:
    """Owns ``source`` from now on: reads it on a daemon thread and closes it when stopped."""

    def __init__(self, source: FrameSource, on_frame: Callable[[], None]) -> None:
        self.source = source
        self._on_frame = on_frame
        self._lock = threading.Lock()
        self._latest: tuple[Frame, float] | None = None
        self._error: SourceError | None = None
        self._stop = threading.Event()
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"capture {source.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    frame = self.source.read()
                except SourceError as error:
                    with self._lock:
                        self._error = error
                    self._on_frame()
                    return
                arrived = time.perf_counter()
                with self._lock:
                    if self._latest is not None:
                        self.dropped += 1
                    self._latest = (frame, arrived)
                self._on_frame()
        finally:
            self.source.close()

    def reset_dropped(self) -> None:
        with self._lock:
            self.dropped = 0

    def has_frame(self) -> bool:
        with self._lock:
            return self._latest is not None or self._error is not None

    def take(self) -> tuple[Frame, float] | None:
        """The newest frame and when it arrived (perf_counter), or None if none is new.

        Raises the source's SourceError (camera unplugged) once every frame before it was taken.
        """
        with self._lock:
            latest, self._latest = self._latest, None
            if latest is None and self._error is not None:
                error, self._error = self._error, None
                raise error
        return latest

    def stop(self, timeout: float = 2.0) -> None:
        """Stop reading; the thread closes the source. A read stuck in the driver is left to finish."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("%s: capture thread still blocked in a read; it closes the camera when that returns",
                        self.source.name)
