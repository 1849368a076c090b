"""The user's own recordings for enrollment: `DIR/snap` (one snap per clip) and `DIR/no_snap` (the
room's ordinary sound and its look-alikes), read at the model's rate and split into a part to
train on and a part held back (never trained on) to judge the result and set the threshold by."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class UserClips:
    """The user's folder at the model's rate, split into training and held-back parts."""

    snaps_train: list  # trainer.data.SnapClip
    snaps_held: list
    room_train: list[np.ndarray]
    room_held: list[np.ndarray]
    room_names: list[str]  # per room_train entry (for the report)
    skipped: list[str] = field(default_factory=list)
    n_snap_files: int = 0
    n_no_snap_files: int = 0

    def room_seconds(self, rate: int, held: bool = False) -> float:
        return sum(len(x) for x in (self.room_held if held else self.room_train)) / rate

    def summary(self, rate: int) -> dict:
        return {"snap_clips": self.n_snap_files, "snap_train": len(self.snaps_train),
                "snap_held_back": len(self.snaps_held), "no_snap_files": self.n_no_snap_files,
                "room_seconds_train": round(self.room_seconds(rate), 1),
                "room_seconds_held_back": round(self.room_seconds(rate, True), 1),
                "skipped": len(self.skipped)}


def _hash_order(name: str) -> str:
    return hashlib.sha1(f"enroll:{name}".encode()).hexdigest()


def held_back_names(names: list[str], fraction: float) -> set[str]:
    """Every k-th name (k = 1/fraction) in an order given by a hash of the name: deterministic,
    independent of file order, and about `fraction` of them. Nothing is held back from fewer
    than 5 clips (too few to both train and judge)."""
    if fraction <= 0 or len(names) < 5:
        return set()
    k = max(2, round(1 / fraction))
    order = sorted(names, key=_hash_order)
    return {n for i, n in enumerate(order) if i % k == k - 1}


def split_recording(x: np.ndarray, fraction: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(train part, held-back part): the last `fraction` of a recording of at least 2 s is held
    back; shorter ones are all training."""
    if fraction <= 0 or len(x) < 2 * rate:
        return x, x[:0]
    cut = int(len(x) * (1 - fraction))
    return x[:cut], x[cut:]


def load_user_dir(folder: Path, rate: int, holdout: float = 0.2) -> UserClips:
    from snap_mqtt.audio_io import AudioFileError, audio_files, is_silent, read_audio
    from snap_mqtt.onset import snap_onset
    from trainer.cli import UsageError
    from trainer.data import SnapClip

    for sub in ("snap", "no_snap"):
        if not (folder / sub).is_dir():
            raise UsageError(f"{folder / sub}: no such folder (enroll needs DIR/snap and DIR/no_snap, "
                             "as written by `snap-train record --guided DIR`)")
    skipped: list[str] = []

    def read_all(sub: str) -> list[tuple[Path, np.ndarray]]:
        out = []
        for p in audio_files([folder / sub]):
            if p.name.startswith("."):
                continue
            try:
                x = read_audio(p, rate).samples
            except AudioFileError as exc:
                log.warning("skipped: %s", exc)
                skipped.append(str(exc))
                continue
            if is_silent(x):
                log.warning("skipped: %s: silent (digital silence)", p)
                skipped.append(f"{p}: silent")
                continue
            out.append((p, x))
        return out

    snap_files = read_all("snap")
    snaps = []
    for p, x in snap_files:
        o = snap_onset(x, rate)
        if o is None:
            msg = f"{p}: no clear snap in a snap clip (check its label; not trained on)"
            log.warning("skipped: %s", msg)
            skipped.append(msg)
            continue
        snaps.append(SnapClip(p.name, x, int(o)))
    room_files = read_all("no_snap")
    if not snaps:
        raise UsageError(f"{folder / 'snap'}: no usable snap clips (need WAV, FLAC or OGG clips with a snap each)")
    if not room_files:
        raise UsageError(f"{folder / 'no_snap'}: no usable recordings of the room (need at least a minute "
                         "of its ordinary sound, WAV, FLAC or OGG)")
    held = held_back_names([s.name for s in snaps], holdout)
    room_train, room_held, names = [], [], []
    for p, x in room_files:
        a, b = split_recording(x, holdout, rate)
        if len(a) >= rate // 4:
            room_train.append(a)
            names.append(p.name)
        if len(b):
            room_held.append(b)
    if not room_train:
        raise UsageError(f"{folder / 'no_snap'}: recordings too short (need at least 0.25 s each)")
    return UserClips(snaps_train=[s for s in snaps if s.name not in held],
                     snaps_held=[s for s in snaps if s.name in held],
                     room_train=room_train, room_held=room_held, room_names=names, skipped=skipped,
                     n_snap_files=len(snap_files), n_no_snap_files=len(room_files))
