"""Which recordings are for training, validation and test: deterministic, independent of file order.

Clips (snap/, no_snap/) are split by a hash of their file name, so adding or reordering files never
moves an existing clip to another part. Background recordings are split by whole files, named
below: the evaluation backgrounds are never mixed into training data.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

Split = Literal["train", "val", "test"]

TRAIN_PCT = 70
VAL_PCT = 15  # the rest (15 %) is the held-out test part


def split_of(name: str, salt: str = "snap-mqtt-v1") -> Split:
    """Split of a clip from its file name (not its folder, so relabelling keeps the split)."""
    h = int.from_bytes(hashlib.sha1(f"{salt}:{Path(name).name}".encode()).digest()[:8], "big") % 100
    if h < TRAIN_PCT:
        return "train"
    if h < TRAIN_PCT + VAL_PCT:
        return "val"
    return "test"


# Background files kept for evaluation (scenes and false-trigger negatives), matched as substrings of
# the path relative to background/. Everything else under background/ may be used for training.
EVAL_BACKGROUND_PATTERNS: tuple[str, ...] = (
    "keyboard/K3P__",  # two of the five keyboards
    "keyboard/MateBook14__",
    "household/_background_noise___doing_the_dishes",
    "music/Karissa_Hobbs_-_Lets_Go_Fishin",
    "music/Kevin_MacLeod_-_Vibe_Ace",
    "speech/198-209-0000",
    "speech/5703-47212-0000",
    "speech/sc09__zero__",
    "speech/sc09__one__",
    "speech/sc09__two__",
    "other/_background_noise___exercise_bike",
)


def background_split(rel_path: str) -> Literal["train", "eval"]:
    rel = rel_path.replace("\\", "/")
    return "eval" if any(p in rel for p in EVAL_BACKGROUND_PATTERNS) else "train"


def background_kind(rel_path: str) -> str:
    """'keyboard', 'speech', 'music', 'household', 'other' (the first folder under background/)."""
    parts = rel_path.replace("\\", "/").split("/")
    if "background" in parts:
        parts = parts[parts.index("background") + 1:]
    return parts[0] if len(parts) > 1 else "other"
