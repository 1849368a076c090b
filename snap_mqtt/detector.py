"""Streaming snap detection on a sliding window (pure logic: no audio device, no MQTT, no files).

Blocks of any size go in; windows of `window_samples` start every `hop_samples` from `phase`
samples after the stream (or the last `reset`) began, so how the stream is chunked never changes
which windows are scored, nor the events. All windows a block completes are scored in one batched
call. The pipeline sets the phase so that window ends fall where capture blocks of whole hops
end: a window is then scored as soon as its block arrives, not up to a hop later.

A window is positive when the model's probability reaches the threshold; the model was trained to
say so when a snap's onset lies `onset_min_samples..onset_max_samples` into the window. For each
positive window the onset is localised in that region of the signal (`onset.find_onset`). One snap
is seen by several overlapping windows; the detector fires on the first window whose localised
onset is new, i.e. at least `refractory` seconds after the last event's onset. That window is the
earliest the model can be sure (the onset ~40 ms before the window's end with the shipped model),
so an event is out about 40-60 ms after the snap starts, and two snaps 250 ms apart are two events.

Two thresholds (`follow_threshold` below `threshold`, both off when equal): a snap that would start
a new gesture must reach `threshold`, where false triggers are decided; a snap within `follow_seconds`
(the gesture gap) of the last one only needs `follow_threshold`: one missed snap of a double or
triple gets the count wrong, while speech or clatter rarely clears even the lower bar at exactly
such a moment. Only until the gesture is full (`follow_max_count` snaps, the gesture counter's
`max_count`): a further snap starts a new gesture, so it must be sure. A weak snap *before* a sure
one is never reported: anything in the half second before a snap (a key, a cup) would add to its
count.

A busy guard (`busy_seconds`, 0 turns it off): a gesture cannot start when, in the `busy_seconds`
before its first snap, `busy_count` or more other snap-like sounds scored `busy_level` or more
without being reported. Music with a snare, a rim click or a clap on the beat scores like a run of
snaps, most below the threshold and one now and then above it; a person's snap in a room is rarely
preceded by two near misses in a second and a half. Snaps already reported never count against the
next gesture.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from snap_mqtt.dsp import butter_highpass_ir
from snap_mqtt.events import SnapEvent, iso_now
from snap_mqtt.onset import find_onset

# A scorer maps float32 windows [B, window_samples] to probabilities [B] (numpy or torch out).
Scorer = Callable[[np.ndarray], Any]

MAX_BATCH = 256  # windows per forward call: bounds memory when a long file comes in one block
# a transient after the search region this much louder (10 dB) than the one in it means the
# window is early for it
_LATER_LOUDER = 10 ** (10 / 20)
_PEAK_LEAD_S = 0.010  # a snap's envelope peaks a few ms after its onset: search that far past the region
# the busy guard's defaults (docs/detection.md: chosen on validation scenes and evaluation music)
BUSY_SECONDS = 1.5
BUSY_COUNT = 2
BUSY_LEVEL = 0.6  # 0.5 until 2026-12-04 (model card row 40)


@dataclass(frozen=True)
class WindowSpec:
    """What the detector needs to know about a model (all in model samples)."""

    sample_rate: int
    window_samples: int
    hop_samples: int
    threshold: float
    onset_min_samples: int
    onset_max_samples: int
    follow_threshold: float | None = None  # None: the same as threshold (one threshold)

    @classmethod
    def from_metadata(cls, meta: Any) -> "WindowSpec":
        lo, hi = int(meta.onset_min_samples), int(meta.onset_max_samples)
        if hi <= lo:  # older metadata without a region: assume the snap may sit anywhere
            lo, hi = 0, int(meta.window_samples) - 1
        follow = getattr(meta, "follow_threshold", None)
        return cls(int(meta.sample_rate), int(meta.window_samples), int(meta.hop_samples),
                   float(meta.threshold), lo, hi, None if follow is None else float(follow))


class Detector:
    """Feed `push(block)` mono float32 blocks at the model's rate; get `SnapEvent`s.

    `model` is a loaded `SnapModel` (its metadata gives rate, window, hop, threshold and the
    onset region), or any callable scorer `[B, window] -> [B]` together with `spec=WindowSpec(...)`.
    `threshold`, `follow_threshold` and `hop_samples` override the model's. `follow_seconds` is how
    close to a sure snap the lower threshold applies (the gesture gap; 0 turns it off), and
    `follow_max_count` how many snaps such a chain may hold (the gesture's `max_count`).
    `start_sample` offsets the time base (used when a model is swapped mid-stream). `busy_seconds`,
    `busy_count` and `busy_level` set the busy guard (see the module's doc; 0 seconds: off)."""

    def __init__(self, model: Any, threshold: float | None = None, refractory: float = 0.15,
                 hop_samples: int | None = None, *, spec: WindowSpec | None = None, start_sample: int = 0,
                 onset_gate: bool = True, follow_threshold: float | None = None, follow_seconds: float = 0.0,
                 follow_max_count: int = 3, phase: int = 0, busy_seconds: float = 0.0,
                 busy_count: int = BUSY_COUNT, busy_level: float = BUSY_LEVEL):
        if spec is None:
            meta = getattr(model, "metadata", None)
            if meta is None:
                raise TypeError("Detector needs a SnapModel, or a scorer callable together with spec=WindowSpec(...)")
            spec = WindowSpec.from_metadata(meta)
        self._score = _scorer_for(model)
        self.spec = spec
        self.sample_rate = spec.sample_rate
        self.window = spec.window_samples
        self.hop = int(hop_samples) if hop_samples is not None else spec.hop_samples
        if self.hop <= 0:
            raise ValueError(f"hop_samples must be positive, got {self.hop}")
        self.phase = int(phase) % self.hop  # first window's start after the origin
        self.threshold = float(threshold) if threshold is not None else spec.threshold
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {self.threshold}")
        if refractory <= 0:
            raise ValueError(f"refractory must be > 0 seconds, got {refractory}")
        self.refractory = float(refractory)
        self._refr_samples = int(round(self.refractory * self.sample_rate))
        follow = follow_threshold if follow_threshold is not None else spec.follow_threshold
        self.follow_threshold = self.threshold if follow is None else float(follow)
        if not 0.0 < self.follow_threshold < 1.0:
            raise ValueError(f"follow_threshold must lie in (0, 1), got {self.follow_threshold}")
        if follow_seconds < 0:
            raise ValueError(f"follow_seconds must be >= 0, got {follow_seconds}")
        self._follow_samples = int(round(follow_seconds * self.sample_rate))
        if follow_max_count < 1:
            raise ValueError(f"follow_max_count must be >= 1, got {follow_max_count}")
        self._follow_max = int(follow_max_count)
        if busy_seconds < 0:
            raise ValueError(f"busy_seconds must be >= 0, got {busy_seconds}")
        if busy_count < 1:
            raise ValueError(f"busy_count must be >= 1, got {busy_count}")
        if not 0.0 < busy_level < 1.0:
            raise ValueError(f"busy_level must lie in (0, 1), got {busy_level}")
        self._busy_samples = int(round(busy_seconds * self.sample_rate))
        self.busy_count = int(busy_count)
        self.busy_level = float(busy_level)
        self._lo = max(0, spec.onset_min_samples)
        self._hi = min(self.window, spec.onset_max_samples + int(round(_PEAK_LEAD_S * self.sample_rate)))
        self._gate = _OnsetGate(self.sample_rate, self.window, self._lo, self._hi) if onset_gate else None
        self._samples_seen = int(start_sample)
        self._clear()

    # -- state --------------------------------------------------------------------------------------
    def _clear(self) -> None:
        self._origin = self._samples_seen  # windows start at origin + phase + k * hop
        # audio not yet fully used: _store[:_len], whose first sample has absolute index _buf_start;
        # a preallocated store so one-sample blocks cost O(1), not a copy of the window each
        self._store = np.zeros(2 * self.window + 4 * self.hop, dtype=np.float32)
        self._len = 0
        self._buf_start = self._samples_seen
        self._next_window = self._origin + self.phase  # absolute start of the next window to score
        self._last_onset: int | None = None  # absolute onset of the last event
        self._run_max = 0.0  # highest probability since the last event within the current run
        self._chain = 0  # events in the current gesture as the counter will see it (within the gap, up to full)
        self._near: deque[int] = deque()  # onsets of recent snap-like sounds not reported (the busy guard)

    def set_phase(self, phase: int) -> None:
        """Start windows `phase` samples (mod hop) after the origin; only before audio has come in
        since the origin (a new detector, or just after `reset`)."""
        if self._len or self._buf_start != self._origin:
            raise RuntimeError("set_phase after audio has been pushed: reset() first")
        self.phase = int(phase) % self.hop
        self._next_window = self._origin + self.phase

    def reset(self, gap_samples: int = 0) -> None:
        """Forget buffered audio and the refractory state (after an audio gap); the time base goes
        on, `gap_samples` further if the length of the gap is known."""
        self._samples_seen += max(0, int(gap_samples))
        self._clear()

    def skip(self, n_samples: int) -> None:
        """Let `n_samples` of audio pass without looking at it (paused detection)."""
        self.reset(n_samples)

    @property
    def samples_seen(self) -> int:
        """Samples of audio consumed since the stream began (the detector's clock)."""
        return self._samples_seen

    @property
    def floor(self) -> float:
        """The lowest probability that can make an event: the follow threshold when it is in use."""
        return min(self.threshold, self.follow_threshold) if self._follow_samples > 0 else self.threshold

    @property
    def busy_seconds(self) -> float:
        return self._busy_samples / self.sample_rate

    @property
    def now(self) -> float:
        return self._samples_seen / self.sample_rate

    @property
    def max_delay(self) -> float:
        """Longest time from a snap's onset to its event, seconds: the last window that can still
        place the onset in its positive region ends `window - onset_min` samples after it."""
        return (self.window - self._lo + self.hop) / self.sample_rate

    # -- streaming ----------------------------------------------------------------------------------
    def push(self, block: np.ndarray) -> list[SnapEvent]:
        x = np.asarray(block, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"Detector.push expects mono samples [frames], got shape {x.shape}")
        if len(x) == 0:
            return []
        self._append(x)
        self._samples_seen += len(x)
        end = self._buf_start + self._len
        n = 0 if end < self._next_window + self.window else (end - self._next_window - self.window) // self.hop + 1
        events: list[SnapEvent] = []
        done = 0
        while done < n:
            b = min(MAX_BATCH, n - done)
            first = self._next_window + done * self.hop
            events.extend(self._score_windows(first, b))
            done += b
        self._next_window += n * self.hop
        # keep only what the next window needs
        drop = min(self._next_window - self._buf_start, self._len)
        if drop > 0:
            self._store[: self._len - drop] = self._store[drop: self._len]
            self._len -= drop
            self._buf_start += drop
        return events

    def _append(self, x: np.ndarray) -> None:
        need = self._len + len(x)
        if need > len(self._store):
            grown = np.zeros(max(need, 2 * len(self._store)), dtype=np.float32)
            grown[: self._len] = self._store[: self._len]
            self._store = grown
        self._store[self._len: need] = x
        self._len = need

    def _score_windows(self, first: int, count: int) -> list[SnapEvent]:
        off = first - self._buf_start
        span = self._store[off: off + (count - 1) * self.hop + self.window]
        wins = np.lib.stride_tricks.sliding_window_view(span, self.window)[:: self.hop][:count]
        # only windows where an onset could be placed go to the model: the others could never
        # fire (see `_localise`), and most windows of a room's sound are such
        todo = self._gate.candidates(wins) if self._gate is not None else np.ones(count, dtype=bool)
        probs = np.zeros(count, dtype=np.float64)
        n_todo = int(todo.sum())
        if n_todo:
            p = np.asarray(_to_numpy(self._score(np.ascontiguousarray(wins[todo]))), dtype=np.float64).reshape(-1)
            if len(p) != n_todo:
                raise RuntimeError(f"scorer returned {len(p)} probabilities for {n_todo} windows")
            probs[todo] = p
        events: list[SnapEvent] = []
        floor = self.floor
        low = min(floor, self.busy_level) if self._busy_samples else floor
        for i in range(count):
            p = float(probs[i])
            if not p >= low:  # also False for NaN
                self._run_max = 0.0
                continue
            # (a window under the floor only feeds the busy guard, and ends the run like any other)
            self._run_max = max(self._run_max, p) if p >= floor else 0.0
            start = first + i * self.hop
            where = self._localise(wins[i])
            if where is None:
                continue  # nothing in the region starts a transient: the run belongs to an earlier onset
            onset = start + where
            last = self._last_onset
            if last is not None and onset - last < self._refr_samples:
                continue  # the snap already reported, seen again by a later window
            # within the gap of the last event, and its gesture not yet full (the counter closes a
            # full one at once: the next snap would start a gesture, so it must be sure)
            joins = last is not None and onset - last < self._follow_samples and self._chain < self._follow_max
            if p < floor or (p < self.threshold and not joins) or (not joins and self._busy(onset)):
                self._near_miss(onset, p)  # not sure enough to start a gesture, or right after near misses
                continue
            self._chain = self._chain + 1 if joins else 1
            self._last_onset = onset
            while self._near and self._near[-1] > onset - self._refr_samples:
                self._near.pop()  # this snap's own earlier, weaker windows were no near miss
            events.append(SnapEvent(time=onset / self.sample_rate, confidence=self._run_max,
                                    detected_at=(start + self.window) / self.sample_rate, timestamp=iso_now()))
            self._run_max = 0.0
        return events

    def _near_miss(self, onset: int, p: float) -> None:
        """Remember a snap-like sound that was not reported (the busy guard's evidence)."""
        if not self._busy_samples or p < self.busy_level:
            return
        if self._near and onset - self._near[-1] < self._refr_samples:
            return  # the same sound, seen again by a later window
        self._near.append(onset)

    def _busy(self, onset: int) -> bool:
        """Would a gesture starting at `onset` come right after `busy_count` near misses?"""
        if not self._busy_samples:
            return False
        while self._near and self._near[0] < onset - self._busy_samples:
            self._near.popleft()
        return sum(1 for t in self._near if t <= onset - self._refr_samples) >= self.busy_count

    def _localise(self, window: np.ndarray) -> int | None:
        """Onset of the snap within the window's positive region, in samples from its start; None
        when the region places no onset: digital silence; an onset that reaches back to the
        region's first sample (something that started before it: its decay, or a snap already
        seen); or a much louder transient still to come after the region (the model fired early
        for it: a later window will place it properly)."""
        o = find_onset(window, self.sample_rate, start=self._lo, stop=self._hi)
        if o is None or o.index <= self._lo:
            return None
        if self._hi < self.window - 1:
            later = find_onset(window, self.sample_rate, start=self._hi, stop=self.window)
            if later is not None and later.peak > o.peak * _LATER_LOUDER:
                return None
        return o.index


class _OnsetGate:
    """Which windows could `Detector._localise` place an onset in? A cheap check run before the
    model (about a tenth of a forward call per window), never stricter than `_localise`.

    `_localise` needs, inside the search region, an envelope peak that the envelope rose to from
    below a tenth of it (20 dB) without leaving the region. The gate computes the same envelope
    (onset.envelope: 4th-order Butterworth high-pass, rectified, 1 ms mean) for the region only,
    by FFT, and asks for a sample at 0.95 of the region's peak preceded in the region by one under
    0.11 of it: the margins absorb the FFT's rounding, so every window `_localise` accepts passes."""

    CUTOFF_HZ = 1500.0  # as onset.find_onset
    SMOOTH_MS = 1.0

    def __init__(self, sample_rate: int, window: int, lo: int, hi: int):
        self.ir = butter_highpass_ir(4, self.CUTOFF_HZ, int(sample_rate))
        self.n_avg = max(1, int(sample_rate * self.SMOOTH_MS / 1000))
        # np.convolve(env, ones(n) / n, "same") puts sample i's mean over env[i - n//2, i + (n-1)//2]
        self.back, self.ahead = (self.n_avg // 2, (self.n_avg - 1) // 2) if self.n_avg > 1 else (0, 0)
        self.lo, self.hi = lo, hi
        # the slice of the window the envelope over [lo, hi) depends on
        self.a = max(0, lo - self.back - (len(self.ir) - 1))
        self.b = min(window, hi + self.ahead)
        self.nfft = _fast_fft_size(self.b - self.a + len(self.ir) - 1)
        self.h = np.fft.rfft(self.ir, self.nfft)
        # a region whose envelope reaches past the window's edges: no shortcut, score everything
        self.at_edge = lo - self.back - (len(self.ir) - 1) < 0 or hi + self.ahead >= window

    def candidates(self, wins: np.ndarray) -> np.ndarray:
        if self.at_edge or self.hi - self.lo < 2:
            return np.ones(len(wins), dtype=bool)
        seg = np.asarray(wins[:, self.a: self.b], dtype=np.float64)
        hp = np.fft.irfft(np.fft.rfft(seg, self.nfft, axis=1) * self.h, self.nfft, axis=1)[:, : seg.shape[1]]
        # the region's smoothed envelope (times n_avg): sums over [j - back, j + ahead] by cumulative sums
        c = np.cumsum(np.abs(hp), axis=1)
        j0, j1 = self.lo - self.a, self.hi - self.a
        e = c[:, j0 + self.ahead: j1 + self.ahead] - c[:, j0 - self.back - 1: j1 - self.back - 1]
        peak = e.max(axis=1, keepdims=True)
        before = np.minimum.accumulate(e, axis=1)  # lowest so far, including this sample
        rose = (e[:, 1:] >= 0.95 * peak) & (before[:, :-1] < 0.11 * peak)
        return (peak[:, 0] > 0.9e-7 * self.n_avg) & rose.any(axis=1)


def _fast_fft_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (FFTs of such sizes are fast; a power of two can be 1.7x longer)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _to_numpy(y: Any) -> np.ndarray:
    if hasattr(y, "detach"):
        return y.detach().cpu().numpy()
    return np.asarray(y)


def _scorer_for(model: Any) -> Scorer:
    """A numpy-in scorer for a SnapModel (TorchScript) or a plain callable."""
    if hasattr(model, "predict") and hasattr(model, "metadata"):
        import torch

        def score(wins: np.ndarray) -> np.ndarray:
            if not wins.flags.writeable:  # one window is a read-only view; torch warns on those
                wins = wins.copy()
            return model.predict(torch.from_numpy(wins)).float().numpy()

        return score
    if callable(model):
        return model
    raise TypeError(f"not a model or scorer: {type(model).__name__}")


def windows_for(n_samples: int, window: int, hop: int) -> int:
    """How many windows a stream of n samples completes."""
    return 0 if n_samples < window else (n_samples - window) // hop + 1


__all__ = ["Detector", "WindowSpec", "Scorer", "windows_for", "MAX_BATCH"]
