"""Loaded landmark models kept per (name, back-end), so switching back to one is instant."""
from __future__ import annotations

import logging
from collections import OrderedDict

from models.landmark_model import LandmarkModel
from models.registry import MEDIAPIPE68

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 4


def cache_key(name: str, backend: str) -> tuple[str, str]:
    """mediapipe68 runs on MediaPipe whatever back-end is asked for: one entry for all of them."""
    return (name, "mediapipe") if name == MEDIAPIPE68 else (name, backend)


class ModelCache:
    """Least-recently-used models; the one in use is never evicted. Owned by the worker thread only."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("the model cache needs room for at least one model")
        self.capacity = capacity
        self._models: OrderedDict[tuple[str, str], LandmarkModel] = OrderedDict()

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._models

    def __len__(self) -> int:
        return len(self._models)

    def get(self, key: tuple[str, str]) -> LandmarkModel | None:
        model = self._models.get(key)
        if model is not None:
            self._models.move_to_end(key)
        return model

    def put(self, key: tuple[str, str], model: LandmarkModel, in_use: LandmarkModel | None = None) -> None:
        """Keep ``model``; close the least recently used others beyond the capacity (never ``in_use``)."""
        previous = self._models.pop(key, None)
        if previous is not None and previous is not model and previous is not in_use:
            previous.close()
        self._models[key] = model
        for old_key in list(self._models):
            if len(self._models) <= self.capacity:
                break
            old = self._models[old_key]
            if old is model or old is in_use:
                continue
            del self._models[old_key]
            log.debug("closing cached model %s", old_key)
            old.close()

    def close_all(self) -> None:
        models, self._models = list(self._models.values()), OrderedDict()
        for model in models:
            try:
                model.close()
            except Exception:  # closing must go on for the others
                log.exception("closing a landmark model failed")
