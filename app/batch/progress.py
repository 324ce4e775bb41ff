"""One progress bar over every frame of the collection (frames per second, time left)."""
from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    def __init__(self, total: int, enabled: bool | None = None) -> None:
        """``enabled`` None: shown when stderr is a terminal."""
        self._bar = tqdm(total=total, unit="frame", dynamic_ncols=True, smoothing=0.1,
                         disable=None if enabled is None else not enabled, file=sys.stderr)

    def advance(self, frames: int) -> None:
        self._bar.update(frames)

    def add_to_total(self, frames: int) -> None:
        """Correct the total: an input turned out shorter (negative) or longer than declared."""
        if frames and self._bar.total is not None:
            self._bar.total = max(self._bar.n, self._bar.total + frames)
            self._bar.refresh()

    def say(self, message: str) -> None:
        """A line above the bar."""
        tqdm.write(message, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()
