"""The interface every 68-point landmark model implements (ours and the references).

A model takes aligned crops (``models.align``) and returns landmarks in *frame*
coordinates, mapped back through each crop's inverse matrix. The work is split in
three calls so the pipeline can time each stage: ``preprocess`` + ``infer`` (the
network), then ``decode`` (heatmaps or coordinates -> points and confidences).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

from models.types import AlignedCrop, Landmarks


class LandmarkModel(ABC):
    name: str
    input_size: int  # side of the square aligned crop the model expects
    backend: str  # the engine that runs it, e.g. "ort-cpu", "tensorrt-fp16", "mediapipe"
    precision: str = "fp32"  # the numeric precision that runs (engines.precision): fp32, fp16 or int8
    # Mean confidence under which this model's fit is not a face (confidence scales differ
    # between models); the tracker drops a track below it or below its own threshold.
    min_confidence: float = 0.0

    @abstractmethod
    def infer(self, crops: Sequence[AlignedCrop]) -> Any:
        """Run the network on a batch of crops; returns the raw outputs for ``decode``."""

    @abstractmethod
    def decode(self, raw: Any, crops: Sequence[AlignedCrop]) -> list[Landmarks]:
        """Turn raw outputs into one ``Landmarks`` per crop, in frame coordinates."""

    def predict(self, crops: Sequence[AlignedCrop]) -> list[Landmarks]:
        return self.decode(self.infer(crops), crops) if crops else []

    def close(self) -> None:
        """Release the engine; the model is unusable afterwards."""

    def __enter__(self) -> "LandmarkModel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
