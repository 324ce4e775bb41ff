"""The standard 300-VW clip split: 50 training clips and the three test categories.

Category A holds well-lit, mostly frontal clips, B harder lighting and expressions,
C unconstrained, often occluded or dark scenes (Shen et al., 300-VW challenge, 2015).
"""
from __future__ import annotations

TRAIN = (
    "001 002 003 004 007 009 010 011 013 015 016 017 018 019 020 022 025 027 028 029 031 033 034 035 037 "
    "039 041 043 044 046 047 048 049 053 057 059 112 113 115 119 120 123 138 143 144 160 204 205 223 225"
).split()
CATEGORY_A = (
    "114 124 125 126 150 158 401 402 505 506 507 508 509 510 511 514 515 518 519 520 521 522 524 525 537 "
    "538 540 541 546 547 548"
).split()
CATEGORY_B = "203 208 211 212 213 214 218 224 403 404 405 406 407 408 409 412 550 551 553".split()
CATEGORY_C = "410 411 516 517 526 528 529 530 531 533 557 558 559 562".split()

SPLITS: dict[str, tuple[str, ...]] = {
    "train": tuple(TRAIN),
    "A": tuple(CATEGORY_A),
    "B": tuple(CATEGORY_B),
    "C": tuple(CATEGORY_C),
}
TEST_CATEGORIES = ("A", "B", "C")
OTHER = "all"  # the category of clips that are not 300-VW ids (e.g. synthetic clips)

_CATEGORY_OF = {clip: name for name, clips in SPLITS.items() for clip in clips}


def category_of(clip_id: str) -> str:
    """The split a clip id belongs to ("train", "A", "B", "C"), or ``OTHER`` for unknown ids."""
    return _CATEGORY_OF.get(clip_id, OTHER)
