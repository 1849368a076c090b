"""Where a snap starts, found from the signal.

A snap is a sharp broadband transient. Its onset is where the high-passed amplitude envelope
first comes within `rel_db` (default 20 dB) of its peak. Used by the trainer (to place snap clips
in training windows and scenes), the evaluation (ground truth) and the detector (to time events).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from snap_mqtt.dsp import butter_highpass_ir, convolve_causal


@dataclass(frozen=True)
class Onset:
    index: int  # sample index of the onset
    peak_index: int  # sample index of the envelope's peak
    peak: float  # linear peak of the high-passed envelope
    prominence_db: float  # peak over the median envelope level, dB


def envelope(x: np.ndarray, sample_rate: int, cutoff_hz: float = 1500.0, smooth_ms: float = 1.0) -> np.ndarray:
    """High-passed, rectified, lightly smoothed amplitude envelope."""
    # 4th-order Butterworth high-pass (as scipy's butter + sosfilt, without importing scipy)
    hp = convolve_causal(x, butter_highpass_ir(4, float(cutoff_hz), int(sample_rate)))
    env = np.abs(hp)
    n = max(1, int(sample_rate * smooth_ms / 1000))
    if n > 1:
        env = np.convolve(env, np.ones(n) / n, mode="same")
    return env


def find_onset(x: np.ndarray, sample_rate: int, rel_db: float = 20.0, cutoff_hz: float = 1500.0,
               start: int = 0, stop: int | None = None) -> Onset | None:
    """Onset of the strongest transient in x[start:stop]; None for silence or an empty range."""
    x = np.asarray(x)
    if len(x) == 0:
        return None
    env = envelope(x, sample_rate, cutoff_hz)
    stop = len(env) if stop is None else min(stop, len(env))
    start = max(0, start)
    if stop - start < 2:
        return None
    seg = env[start:stop]
    k = int(np.argmax(seg))
    peak = float(seg[k])
    if peak <= 1e-7:
        return None
    level = peak * 10 ** (-rel_db / 20)
    # walk back from the peak only while the envelope stays above the level (same transient)
    j = k
    while j > 0 and seg[j - 1] >= level:
        j -= 1
    # then take the first crossing of that level within a short lead-in (the attack is ~1-5 ms)
    median = float(np.median(env)) + 1e-12
    return Onset(index=start + j, peak_index=start + k, peak=peak,
                 prominence_db=float(20 * np.log10(peak / median)))


def snap_onset(x: np.ndarray, sample_rate: int, min_prominence_db: float = 12.0) -> int | None:
    """Onset index of the snap in a snap clip, or None if the clip has no clear transient
    (a "snap" clip without a snap: flagged for review, not trained on)."""
    o = find_onset(x, sample_rate)
    if o is None or o.prominence_db < min_prominence_db:
        return None
    return o.index
