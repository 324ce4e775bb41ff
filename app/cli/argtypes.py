"""Argparse ``type=`` functions: every numeric option is checked at parse time, one way.

A bad value ends in argparse's usual ``error: argument --max-faces: must be an integer
>= 1, got '0'`` (exit status 2), before anything is opened or loaded.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable


def _number(kind: type, minimum: float, inclusive: bool, what: str) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        if value < minimum or (not inclusive and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in its own messages
    return parse


positive_int = _number(int, 1, True, "an integer >= 1")
non_negative_int = _number(int, 0, True, "an integer >= 0")
positive_float = _number(float, 0.0, False, "a number > 0")
non_negative_float = _number(float, 0.0, True, "a number >= 0")


def int_at_least(minimum: int) -> Callable[[str], int]:
    return _number(int, minimum, True, f"an integer >= {minimum}")


def field_of_view(text: str) -> float:
    """A camera field of view in degrees: strictly between 0 and 180."""
    value = positive_float(text)
    if value >= 180.0:
        raise argparse.ArgumentTypeError(f"must be a number > 0 and < 180 (degrees), got {text!r}")
    return value


field_of_view.__name__ = "a number > 0 and < 180"


def frame_size(text: str) -> tuple[int, int]:
    """``WxH`` (e.g. ``640x480``) -> (width, height), each at least 16 pixels."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a size like 640x480 (width x height), got {text!r}") from None
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError(f"must be a size of at least 16x16 (width x height), got {text!r}")
    return width, height


frame_size.__name__ = "a size like 640x480"
