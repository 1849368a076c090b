"""Does a "snap" clip really hold a snap? A check from the signal alone, no model.

The guided recorder runs it on every clip it records as a snap: a clip where the user missed the
prompt (only room sound in it) is flagged for review instead of being trained on. The default model
is deliberately not used here: enrollment exists because that model misses a new hand's snaps, so it
must not be the judge of them.

A snap is a sharp broadband transient: its high-passed envelope peak stands well above the clip's
median level (`snap_mqtt.onset.snap_onset`), and it rises abruptly out of what came just before it
(speech, music and running water swell instead). Key clicks and knocks pass this test too; they are
what the model and the no_snap recordings are for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snap_mqtt.onset import envelope, find_onset

MIN_PROMINENCE_DB = 12.0  # peak over the clip's median envelope (as snap_onset)
MIN_SHARPNESS_DB = 10.0  # peak over the mean envelope in the 100 ms before the onset
_PRE_SECONDS = 0.100
_PRE_GAP_SECONDS = 0.005  # skip the attack's own lead-in
_MIN_PRE_SECONDS = 0.020  # with less context before the onset, judge on prominence alone
MIN_TAIL_SECONDS = 0.050  # a snap starting later than this before the clip's end is cut off


@dataclass(frozen=True)
class ClipCheck:
    has_snap: bool
    onset: int | None  # sample index of the snap's onset (None without a transient)
    prominence_db: float
    sharpness_db: float | None  # None when the onset is too near the clip's start to judge
    reason: str  # why a clip failed ("" when it passed)

    def onset_seconds(self, sample_rate: int) -> float | None:
        return None if self.onset is None else self.onset / sample_rate


def check_snap_clip(x: np.ndarray, sample_rate: int, min_prominence_db: float = MIN_PROMINENCE_DB,
                    min_sharpness_db: float = MIN_SHARPNESS_DB,
                    min_tail_seconds: float = MIN_TAIL_SECONDS) -> ClipCheck:
    """Judge a mono clip that is supposed to contain one snap (or a double snap)."""
    o = find_onset(x, sample_rate)
    if o is None:
        return ClipCheck(False, None, 0.0, None, "silent: no transient at all")
    if o.prominence_db < min_prominence_db:
        return ClipCheck(False, None, o.prominence_db, None,
                         f"no clear transient (peak {o.prominence_db:.1f} dB over the clip's level, "
                         f"need {min_prominence_db:.0f})")
    env = envelope(x, sample_rate, smooth_ms=5.0)
    a = max(0, o.index - int(_PRE_SECONDS * sample_rate))
    b = max(0, o.index - int(_PRE_GAP_SECONDS * sample_rate))
    sharpness: float | None = None
    if b - a >= int(_MIN_PRE_SECONDS * sample_rate):
        sharpness = float(20 * np.log10(env[o.peak_index] / (float(env[a:b].mean()) + 1e-12) + 1e-12))
        if sharpness < min_sharpness_db:
            return ClipCheck(False, o.index, o.prominence_db, sharpness,
                             f"loudest sound swells instead of snapping (rises {sharpness:.1f} dB over the "
                             f"100 ms before it, need {min_sharpness_db:.0f})")
    tail = (len(x) - o.index) / sample_rate
    if len(x) >= 4 * min_tail_seconds * sample_rate and tail < min_tail_seconds:
        return ClipCheck(False, o.index, o.prominence_db, sharpness,
                         f"the snap starts {tail * 1000:.0f} ms before the clip ends: cut off")
    return ClipCheck(True, o.index, o.prominence_db, sharpness, "")
