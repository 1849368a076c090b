"""Gesture scenes built in memory from snap clips over room audio, for choosing a follow threshold
while enrolling.

The follow threshold (docs/detection.md) is the bar for the second and third snap of a gesture, so it
can only be chosen on gestures, and a user records clips, not gestures. These scenes stand in: snap
clips cut around their onsets and placed as singles, doubles and triples over room audio, with
`snap-train scenes`' gesture timing and local-SNR rule (trainer.scenes: snaps 0.25-0.5 s apart,
gestures 3-4.5 s apart, 3-30 dB). `snap-train enroll` builds them twice: from the user's held-back
snaps (never trained on) over the user's room, and from the shipped data's validation snaps over its
validation audio, so that a bar chosen for the user's hand does not cost the shipped data's gestures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from trainer.evaluate import Recording
from trainer.metrics import Gesture
from trainer.scenes import SceneParams, add_at_snr, faded, gesture_times, join

LEAD_S = 0.03  # of the clip kept before the snap's onset (the fade-in stays clear of the attack)
SNAP_S = 0.30  # of the clip kept from the onset on: the snap and its room's ring
SCENE_SECONDS = 30.0  # as `snap-train scenes`: about seven gestures each


def snap_cut(samples: np.ndarray, onset: int, rate: int) -> tuple[np.ndarray, int]:
    """The snap of a clip with a little lead-in, edges faded; (cut, onset in the cut)."""
    a = max(0, onset - int(LEAD_S * rate))
    return faded(samples[a:onset + int(SNAP_S * rate)], rate), onset - a


def room_audio(room: Sequence[np.ndarray], rate: int) -> np.ndarray:
    """The room's recordings as one, joined with the scenes' crossfades (a hard cut would be a click
    that no room makes)."""
    parts = [np.asarray(x, dtype=np.float32) for x in room if len(x)]
    if not parts:
        raise ValueError("no room audio to build scenes on")
    return join(parts, rate)


def room_bed(whole: np.ndarray, n: int, rng: np.random.Generator, rate: int) -> np.ndarray:
    """`n` samples of `whole` (`room_audio`) from a random point, looped with a crossfade when it
    is shorter (a view of `whole` when it is long enough: read it, do not write into it)."""
    start = int(rng.integers(0, max(1, len(whole) - n)))
    if len(whole) - start >= n:
        return whole[start:start + n]
    out, total = [whole[start:]], len(whole) - start
    while total < n + rate:
        out.append(whole)
        total += len(whole)
    return join(out, rate)[:n]


def build(snaps: Sequence, room: Sequence[np.ndarray], rate: int, n_scenes: int = 12, seed: int = 0,
          seconds: float = SCENE_SECONDS, kind: str = "user",
          negatives: Sequence[np.ndarray] = ()) -> tuple[list[Recording], dict[int, np.ndarray]]:
    """`n_scenes` scenes of `seconds` each: (recordings with their truth, {index: audio at `rate`}).
    `snaps`: trainer.data.SnapClip at `rate`; each snap of a gesture is drawn at random from them, at
    its own level. `kind` names the recordings (`kind-scene-NN`) and is their kind in the figures.
    `negatives`: recordings without a snap, listed after the scenes (false gestures are counted there)."""
    if not snaps:
        raise ValueError("no snaps to build scenes from")
    rng = np.random.default_rng(seed)
    params = SceneParams(seconds=seconds)
    cuts = [snap_cut(s.samples, s.onset, rate) for s in snaps]
    n = int(round(seconds * rate))
    whole = room_audio(room, rate)
    recs: list[Recording] = []
    audio: dict[int, np.ndarray] = {}
    for i in range(n_scenes):
        bed = room_bed(whole, n, rng, rate)
        mix = bed.copy()
        times: list[float] = []
        snrs: list[float] = []
        gestures: list[Gesture] = []
        for g in gesture_times(rng, params):
            placed = []
            for t in g:
                clip, onset = cuts[int(rng.integers(len(cuts)))]
                pos = int(round(t * rate))
                _, snr = add_at_snr(mix, bed, clip, onset, pos, float(rng.uniform(params.snr_min_db, params.snr_max_db)),
                                    rate)
                placed.append(pos / rate)
                snrs.append(round(snr, 2))
            times += placed
            gestures.append(Gesture.of(placed, len(placed)))
        recs.append(Recording(Path(f"{kind}-scene-{i:02d}"), "scene", kind, rate, n / rate, times, snrs, gestures))
        audio[i] = mix
    for j, x in enumerate(x for x in negatives if len(x)):
        audio[len(recs)] = np.asarray(x, dtype=np.float32)
        recs.append(Recording(Path(f"{kind}-negative-{j:02d}"), "negative", kind, rate, len(x) / rate))
    return recs, audio
