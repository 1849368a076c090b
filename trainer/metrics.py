"""Event-level metrics: pure functions over times in seconds, no I/O, no torch.

What a user feels is events, not clips: did my snap fire (recall), did something else fire
(precision, false events per hour), was a double snap reported as a double (gesture count).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np

MATCH_TOLERANCE_S = 0.15
# recall by local SNR: band edges in dB (a snap falls in [lo, hi)); the outer bands are open
SNR_BANDS_DB: tuple[float, ...] = (3.0, 10.0, 20.0, 30.0)
# a snap's peak, dB below full scale (`trainer.scenes.PlacedSnap.peak_dbfs`, negated)
LEVEL_BANDS_DB: tuple[float, ...] = (10.0, 20.0, 30.0, 40.0)


# ---------------------------------------------------------------------------------------------
# one-to-one matching of detections to true onsets

@dataclass(frozen=True)
class Matching:
    pairs: tuple[tuple[int, int], ...]  # (true index, detection index)
    unmatched_true: tuple[int, ...]
    unmatched_det: tuple[int, ...]
    errors: tuple[float, ...]  # detection time - true time, per pair (seconds)


def match_events(true_times: Sequence[float], det_times: Sequence[float],
                 tolerance: float = MATCH_TOLERANCE_S) -> Matching:
    """Match detections to true onsets one-to-one within `tolerance` seconds: as many pairs as
    possible, and among those the smallest total time error (Hungarian assignment)."""
    t = np.asarray(true_times, dtype=float)
    d = np.asarray(det_times, dtype=float)
    if len(t) == 0 or len(d) == 0:
        return Matching((), tuple(range(len(t))), tuple(range(len(d))), ())
    from scipy.optimize import linear_sum_assignment

    dist = np.abs(t[:, None] - d[None, :])
    allowed = dist <= tolerance + 1e-9
    # a pair outside the tolerance costs more than any set of allowed pairs can: the assignment
    # first maximises the number of allowed pairs, then minimises their error
    big = 1.0 + tolerance * (min(len(t), len(d)) + 1)
    cost = np.where(allowed, dist, big)
    rows, cols = linear_sum_assignment(cost)
    pairs = sorted((int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c])
    mt = {p[0] for p in pairs}
    md = {p[1] for p in pairs}
    return Matching(
        pairs=tuple(pairs),
        unmatched_true=tuple(i for i in range(len(t)) if i not in mt),
        unmatched_det=tuple(j for j in range(len(d)) if j not in md),
        errors=tuple(float(d[j] - t[i]) for i, j in pairs),
    )


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F1; an empty denominator gives 1.0 (nothing to get wrong)."""
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


@dataclass
class SnapScore:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    errors: list[float] = field(default_factory=list)

    def add(self, true_times: Sequence[float], det_times: Sequence[float],
            tolerance: float = MATCH_TOLERANCE_S) -> Matching:
        m = match_events(true_times, det_times, tolerance)
        self.tp += len(m.pairs)
        self.fp += len(m.unmatched_det)
        self.fn += len(m.unmatched_true)
        self.errors.extend(m.errors)
        return m

    @property
    def precision(self) -> float:
        return prf(self.tp, self.fp, self.fn)[0]

    @property
    def recall(self) -> float:
        return prf(self.tp, self.fp, self.fn)[1]

    @property
    def f1(self) -> float:
        return prf(self.tp, self.fp, self.fn)[2]

    @property
    def median_abs_error_ms(self) -> float | None:
        return float(np.median(np.abs(self.errors)) * 1000) if self.errors else None

    @property
    def median_error_ms(self) -> float | None:
        """Signed: positive when detections are placed after the true onset."""
        return float(np.median(self.errors) * 1000) if self.errors else None

    def summary(self) -> dict:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "precision": self.precision,
                "recall": self.recall, "f1": self.f1, "median_abs_onset_error_ms": self.median_abs_error_ms,
                "median_onset_error_ms": self.median_error_ms}


# ---------------------------------------------------------------------------------------------
# gestures

@dataclass(frozen=True)
class Gesture:
    """A gesture as seen by the metric: its snaps' times (first = gesture time) and its count."""

    start: float
    end: float
    count: int

    @classmethod
    def of(cls, times: Sequence[float], count: int | None = None) -> "Gesture":
        return cls(float(min(times)), float(max(times)), int(count if count is not None else len(times)))


MISSED = 0  # reported count of a true gesture no detection overlapped
SPLIT = -1  # reported as two or more gestures


@dataclass
class GestureScore:
    """Share of true gestures reported exactly once with exactly the right count, and a count
    confusion table. A reported gesture belongs to a true one when its span [first, last snap]
    overlaps the true span widened by the matching tolerance (true gestures are seconds apart)."""

    confusion: dict[int, dict[int, int]] = field(default_factory=dict)  # true count -> reported -> n
    false_gestures: int = 0  # reported gestures that overlap no true gesture
    total: int = 0
    exact: int = 0

    def add(self, truth: Sequence[Gesture], reported: Sequence[Gesture],
            tolerance: float = MATCH_TOLERANCE_S) -> list[int]:
        """Score one recording; returns the reported count per true gesture (0 missed, -1 split)."""
        owners: list[list[int]] = [[] for _ in truth]
        for j, g in enumerate(reported):
            hits = [i for i, t in enumerate(truth)
                    if g.start <= t.end + tolerance and g.end >= t.start - tolerance]
            if not hits:
                self.false_gestures += 1
                continue
            # overlapping two true gestures cannot happen with gestures seconds apart; take the nearest
            i = min(hits, key=lambda k: abs(truth[k].start - g.start))
            owners[i].append(j)
        out = []
        for i, t in enumerate(truth):
            own = owners[i]
            got = MISSED if not own else reported[own[0]].count if len(own) == 1 else SPLIT
            out.append(got)
            row = self.confusion.setdefault(t.count, {})
            row[got] = row.get(got, 0) + 1
            self.total += 1
            self.exact += int(got == t.count)
        return out

    @property
    def exact_share(self) -> float:
        return self.exact / self.total if self.total else 1.0

    def table(self) -> dict[str, dict[str, int]]:
        """JSON-friendly confusion table: {"true 2": {"missed": n, "1": n, "2": n, "split": n}}."""
        def name(c: int) -> str:
            return "missed" if c == MISSED else "split" if c == SPLIT else str(c)
        return {f"true {t}": {name(c): n for c, n in sorted(row.items())}
                for t, row in sorted(self.confusion.items())}

    def summary(self) -> dict:
        return {"true_gestures": self.total, "exact_count": self.exact, "exact_count_share": self.exact_share,
                "false_gestures": self.false_gestures, "confusion": self.table()}


# ---------------------------------------------------------------------------------------------
# rates on negative audio

def poisson_upper(k: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound on a Poisson mean after observing k events
    (exact, via chi-square): 2.996 for k = 0, 4.74 for k = 1."""
    from scipy.stats import chi2

    return float(chi2.ppf(confidence, 2 * (k + 1)) / 2)


@dataclass(frozen=True)
class Rate:
    events: int
    hours: float

    @property
    def per_hour(self) -> float:
        return self.events / self.hours if self.hours > 0 else math.inf

    @property
    def upper95_per_hour(self) -> float:
        return poisson_upper(self.events) / self.hours if self.hours > 0 else math.inf

    def summary(self) -> dict:
        return {"events": self.events, "hours": self.hours, "per_hour": self.per_hour,
                "upper95_per_hour": self.upper95_per_hour}


def false_gestures_by_count(counts: Iterable[int], hours: float, max_count: int = 3) -> dict[str, dict]:
    """False gestures on negative audio split by the count reported: {"1": rate, ..., "2+": rate}.
    What a user binds matters: a light on a double snap only toggles by itself on a false double
    or triple, so "2+" is the rate that automation sees."""
    cs = [int(c) for c in counts]
    out = {str(k): Rate(sum(c == k for c in cs), hours).summary() for k in range(1, max_count + 1)}
    out["2+"] = Rate(sum(c >= 2 for c in cs), hours).summary()
    return out


# ---------------------------------------------------------------------------------------------
# recall by SNR band

def snr_band(snr_db: float, edges: Sequence[float] = SNR_BANDS_DB) -> str:
    """Band label of a local SNR: '<3', '3-10', '10-20', '20-30', '>=30' for the default edges."""
    if snr_db < edges[0]:
        return f"<{edges[0]:g}"
    for lo, hi in zip(edges[:-1], edges[1:]):
        if lo <= snr_db < hi:
            return f"{lo:g}-{hi:g}"
    return f">={edges[-1]:g}"


def recall_by_band(snrs: Iterable[float], hit: Iterable[bool],
                   edges: Sequence[float] = SNR_BANDS_DB) -> dict[str, dict]:
    """{band: {"snaps": n, "detected": k, "recall": k/n}} for bands that hold any snap, in order."""
    counts: dict[str, list[int]] = {}
    order = [f"<{edges[0]:g}"] + [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])] + [f">={edges[-1]:g}"]
    for s, h in zip(snrs, hit):
        c = counts.setdefault(snr_band(s, edges), [0, 0])
        c[0] += 1
        c[1] += int(bool(h))
    return {b: {"snaps": counts[b][0], "detected": counts[b][1], "recall": counts[b][1] / counts[b][0]}
            for b in order if b in counts}


# ---------------------------------------------------------------------------------------------
# threshold sweep

@dataclass(frozen=True)
class SweepPoint:
    threshold: float
    precision: float
    recall: float
    f1: float
    false_snaps_per_hour: float
    false_gestures_per_hour: float
    exact_count_share: float

    def as_dict(self) -> dict:
        return asdict(self)


def best_threshold(points: Sequence[SweepPoint], max_false_gestures_per_hour: float) -> SweepPoint | None:
    """The highest-recall point whose false gestures per hour stay within the budget
    (ties: the higher threshold, the safer one)."""
    ok = [p for p in points if p.false_gestures_per_hour <= max_false_gestures_per_hour]
    if not ok:
        return None
    return max(ok, key=lambda p: (p.recall, p.threshold))
