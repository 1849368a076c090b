"""Window scores against a threshold, and the threshold calibrated on held-back clips (pure).

`positive_peak` is what the detector needs to reach for one snap, `count_runs` about how many
events it reports on audio without one; `calibrate_threshold` weighs the two for `snap-train enroll`
(event-level, on the user's held-back clips; training's window-level F-beta threshold on validation
windows is `trainer.report.calibrate_threshold`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def window_starts(n_samples: int, window: int, hop: int) -> np.ndarray:
    """Starts of the windows a stream of n samples completes (aligned to multiples of hop, as the
    detector's)."""
    if n_samples < window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_samples - window + 1, hop, dtype=np.int64)


def positive_peak(scores: np.ndarray, onset: int, window: int, hop: int, lo: int, hi: int) -> float:
    """Highest score among the windows that place `onset` inside their positive region [lo, hi]:
    what the detector needs to reach its threshold for that snap."""
    pos = onset - np.arange(len(scores)) * hop
    sel = (pos >= lo) & (pos <= hi)
    return float(scores[sel].max()) if sel.any() else 0.0


def count_runs(scores: np.ndarray, threshold: float, merge_windows: int = 1) -> int:
    """Runs of windows at or above `threshold` (runs fewer than `merge_windows` apart count as
    one): about the number of events the detector would report."""
    idx = np.flatnonzero(np.asarray(scores) >= threshold)
    if len(idx) == 0:
        return 0
    return int(1 + np.sum(np.diff(idx) > merge_windows))


@dataclass(frozen=True)
class Calibration:
    threshold: float
    recall: float  # held-back snaps reaching it
    false_triggers: int  # on held-back room audio
    allowed: int  # false triggers the target allows on that much audio
    hours: float
    note: str = ""


def calibrate_threshold(pos_peaks: list[float], neg_scores: list[np.ndarray], hours: float,
                        target_per_hour: float, merge_windows: int = 1,
                        grid: np.ndarray | None = None, fallback: float = 0.5,
                        min_recall: float = 0.9, floor: float | None = None,
                        min_gain: int = 2) -> Calibration:
    """The threshold that keeps false triggers on the held-back room audio within
    `target_per_hour` and, among those, finds the most held-back snaps; of the thresholds that
    tie, the one in the middle (in log-odds), so that neither side sits on the edge.
    When no threshold meets the target, the one with the fewest false triggers among those that
    still find `min_recall` of the held-back snaps: a threshold that finds no snaps helps nobody.
    `floor` (the base model's threshold): never go below it when it finds as many held-back snaps
    (a lower threshold that the held-back clips cannot justify only buys false triggers), nor when
    going below finds fewer than `min_gain` more of them (one snap of ten is no evidence: it took
    one simulated person from 0.937 to 0.87 and the shipped test scenes from 96 to 164 false
    gestures per hour); otherwise go only as far below it as those snaps need."""
    grid = np.round(np.arange(0.02, 0.991, 0.005), 4) if grid is None else grid
    allowed = int(math.floor(target_per_hour * hours))
    peaks = np.asarray(pos_peaks, dtype=float)
    if not len(peaks) and not any(len(s) for s in neg_scores):
        return Calibration(fallback, 1.0, 0, allowed, hours, "nothing held back: kept the base threshold")
    fts = np.array([sum(count_runs(s, t, merge_windows) for s in neg_scores) for t in grid])
    rec = np.array([(peaks >= t).mean() if len(peaks) else 1.0 for t in grid])
    note = ""
    ok = fts <= allowed
    if ok.any():
        cand = grid[ok & (rec >= rec[ok].max() - 1e-12)]
    else:
        note = "no threshold meets the false-trigger target on the held-back audio"
        keep = rec >= min(min_recall, rec.max()) - 1e-12
        cand = grid[keep & (fts <= fts[keep].min())]
    logit = np.log(cand / (1 - cand))
    t = float(1 / (1 + np.exp(-(logit.min() + logit.max()) / 2)))
    t = float(np.clip(round(t, 4), 0.02, 0.98))
    if floor is not None and t < floor:
        rec_t = (peaks >= t).mean() if len(peaks) else 1.0
        gained = int(np.sum(peaks >= t) - np.sum(peaks >= floor))  # held-back snaps only t finds
        if gained < min_gain:
            t = float(floor)
            why = ("it finds as many held-back snaps" if gained <= 0 else
                   f"going below it finds {gained} more held-back snap{'s' if gained != 1 else ''}, fewer than {min_gain}")
            note = (note + "; " if note else "") + f"kept the base threshold ({why})"
        else:
            # below the base threshold only as far as the held-back snaps need: a middle of a wide
            # range (0.36 for one simulated person, whose room audio, trained on, never fired)
            # buys false triggers that the held-back room audio is too short to show
            need = grid[(grid <= floor) & (rec >= rec_t - 1e-12)]
            if len(need):
                t = float(need.max())
                note = (note + "; " if note else "") + "below the base threshold only as far as the held-back snaps need"
    return Calibration(t, float((peaks >= t).mean()) if len(peaks) else 1.0,
                       int(sum(count_runs(s, t, merge_windows) for s in neg_scores)), allowed, hours, note)
