"""One streaming path from device audio to events: downmix, resample to the model's rate, detect,
count. The live listener, `listen --input FILE` and `detect` all feed a SnapPipeline.

`process(block)` returns snap events as soon as the detector is sure and gesture events when their
gap closes, in that order of audio time. Times are seconds of audio since the stream began, in
the device's clock; they survive `reset()` (an audio gap) and `reload()` (a new model).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from snap_mqtt.detector import BUSY_COUNT, BUSY_LEVEL, BUSY_SECONDS, Detector, WindowSpec
from snap_mqtt.events import GestureEvent, SnapEvent
from snap_mqtt.gestures import GestureCounter
from snap_mqtt.resample import StreamingResampler

log = logging.getLogger(__name__)

Event = SnapEvent | GestureEvent


@dataclass(frozen=True)
class DetectionParams:
    """The detection and counting settings a pipeline needs (None: the model's own value)."""

    threshold: float | None = None
    follow_threshold: float | None = None  # a snap next to a sure one (same gesture) needs only this
    refractory: float = 0.15
    gap: float = 0.6
    max_count: int = 3
    hop_samples: int | None = None
    history_seconds: float = 2.0  # recent audio kept for `recent_audio` (detection clips)
    onset_gate: bool = True  # score only windows where an onset could be placed (Detector)
    # the busy guard: no gesture starts right after `busy_count` near misses in `busy_seconds` (Detector)
    busy_seconds: float = BUSY_SECONDS
    busy_count: int = BUSY_COUNT
    busy_level: float = BUSY_LEVEL

    @classmethod
    def from_settings(cls, s: Any) -> "DetectionParams":
        return cls(threshold=s.threshold, follow_threshold=getattr(s, "follow_threshold", None),
                   refractory=s.refractory, gap=s.gap, max_count=s.max_count,
                   hop_samples=getattr(s, "hop_samples", None),
                   busy_seconds=getattr(s, "busy_seconds", BUSY_SECONDS), busy_count=getattr(s, "busy_count", BUSY_COUNT),
                   busy_level=getattr(s, "busy_level", BUSY_LEVEL))


class SnapPipeline:
    """`model`: a SnapModel, or a scorer callable with `spec=WindowSpec(...)`.
    `params`: a Settings, a DetectionParams, or None for the defaults."""

    def __init__(self, model: Any, params: Any = None, input_rate: int | None = None, channels: int = 1,
                 *, spec: WindowSpec | None = None):
        self.params = _params(params)
        self.channels = int(channels)
        if self.channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.paused = False
        self._model, self._spec = model, spec
        self.detector = self._make_detector(model, spec, start_sample=0)
        self.input_rate = int(input_rate) if input_rate is not None else self.detector.sample_rate
        self.resampler = StreamingResampler(self.input_rate, self.detector.sample_rate)
        self._align(self.detector)
        self.counter = GestureCounter(self.params.gap, self.params.max_count, settle=self.detector.max_delay)
        self._frames_in = 0  # device frames consumed: the stream clock
        self._recent = _Recent(int(self.params.history_seconds * self.sample_rate))

    def _align(self, det: Detector) -> None:
        """Window ends where capture blocks of whole hops end: the resampler's output trails its
        input by `lag` model samples, so a block's last `lag` samples come out with the next one."""
        lag = math.ceil(self.resampler.latency * det.sample_rate - 1e-6)
        det.set_phase((-det.window - lag) % det.hop)

    def _make_detector(self, model: Any, spec: WindowSpec | None, start_sample: int) -> Detector:
        p = self.params
        return Detector(model, threshold=p.threshold, refractory=p.refractory, hop_samples=p.hop_samples,
                        spec=spec, start_sample=start_sample, onset_gate=p.onset_gate,
                        follow_threshold=p.follow_threshold, follow_seconds=p.gap, follow_max_count=p.max_count,
                        busy_seconds=p.busy_seconds, busy_count=p.busy_count, busy_level=p.busy_level)

    # -- properties ---------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        """The model's rate (what the detector runs at)."""
        return self.detector.sample_rate

    @property
    def now(self) -> float:
        """Seconds of input audio consumed since the stream began."""
        return self._frames_in / self.input_rate

    @property
    def threshold(self) -> float:
        return self.detector.threshold

    def set_threshold(self, value: float) -> None:
        """Change the sensitivity live (the `number` entity in Home Assistant)."""
        if not 0.0 < float(value) < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {value}")
        self.detector.threshold = float(value)
        self.params = DetectionParams(**{**self.params.__dict__, "threshold": float(value)})

    # -- streaming ----------------------------------------------------------------------------------
    def process(self, block: np.ndarray) -> list[Event]:
        """Device audio [frames] or [frames, channels] -> events, in audio-time order."""
        x = self._mono(block)
        self._frames_in += len(x)
        y = self.resampler.process(x)
        return self._feed(y) + self.counter.advance(self.detector.now)

    def flush(self) -> list[Event]:
        """End of stream: remaining resampler output, then close the open gesture."""
        out = self._feed(self.resampler.flush())
        return out + self.counter.flush()

    def reset(self, gap_seconds: float = 0.0) -> list[Event]:
        """An audio gap (overflow, device lost): no window or gesture spans it. The gesture open
        before the gap is closed and returned; the time base moves on by `gap_seconds`."""
        out: list[Event] = list(self.counter.flush())
        self._frames_in += int(round(max(0.0, gap_seconds) * self.input_rate))
        self.resampler.reset()
        self._restart_detector(self.detector)
        return out

    def reload(self, model: Any, spec: WindowSpec | None = None) -> None:
        """Swap in a new model mid-stream (hot reload), keeping the time base, the open gesture
        and the pause state. Audio buffered for the old model's windows (under one window) is
        dropped, so a snap made at that very instant may be missed."""
        det = self._make_detector(model, spec, start_sample=0)
        if det.sample_rate != self.sample_rate:
            self.resampler = StreamingResampler(self.input_rate, det.sample_rate)
        else:
            self.resampler.reset()
        self._model, self._spec = model, spec
        self._restart_detector(det)
        self.counter.settle = det.max_delay

    def _restart_detector(self, det: Detector) -> None:
        """Fresh detector state whose clock starts at the input clock (the resampler was reset, so
        its next output is the input's next instant)."""
        target = int(round(self._frames_in * det.sample_rate / self.input_rate))
        det.reset(target - det.samples_seen)
        self._align(det)
        self.detector = det
        self._recent = _Recent(int(self.params.history_seconds * det.sample_rate), end=target)

    def _feed(self, y: np.ndarray) -> list[Event]:
        if len(y) == 0:
            return []
        self._remember(y)
        if self.paused:
            self.detector.skip(len(y))
            return []
        out: list[Event] = []
        for snap in self.detector.push(y):
            out.extend(self.counter.advance(snap.detected_at))
            snap, closed = self.counter.add(snap)
            out.append(snap)
            out.extend(closed)
        return out

    def _mono(self, block: np.ndarray) -> np.ndarray:
        x = np.asarray(block)
        if x.ndim == 2:
            if x.shape[1] != self.channels:
                raise ValueError(f"block has {x.shape[1]} channels, the pipeline expects {self.channels}")
            x = x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]
        elif x.ndim != 1:
            raise ValueError(f"block must be [frames] or [frames, channels], got shape {x.shape}")
        x = np.asarray(x, dtype=np.float32)
        if not np.all(np.isfinite(x)):  # a glitching driver must not poison the model's state
            log.warning("non-finite samples in an audio block replaced by silence")
            x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        return x

    # -- recent audio, for the opt-in detection clips --------------------------------------------------
    def _remember(self, y: np.ndarray) -> None:
        self._recent.append(y, end=self.detector.samples_seen + len(y))  # y is pushed right after

    def recent_audio(self, start: float, end: float) -> tuple[np.ndarray, float]:
        """The model-rate audio between `start` and `end` seconds of stream time that is still kept
        (the last `history_seconds`), and the stream time of its first sample."""
        return self._recent.get(int(round(start * self.sample_rate)), int(round(end * self.sample_rate)),
                                self.sample_rate)


class _Recent:
    """The last `keep` samples, with the absolute index just past the newest (amortised O(1) appends)."""

    def __init__(self, keep: int, end: int = 0):
        self.keep = max(0, keep)
        self._store = np.zeros(2 * self.keep, dtype=np.float32)
        self._len = 0
        self.end = end

    def append(self, y: np.ndarray, end: int) -> None:
        self.end = end
        if self.keep == 0:
            return
        y = y[-self.keep:]
        if self._len + len(y) > len(self._store):
            tail = min(self._len, self.keep - len(y))
            self._store[:tail] = self._store[self._len - tail: self._len]
            self._len = tail
        self._store[self._len: self._len + len(y)] = y
        self._len += len(y)

    def get(self, a: int, b: int, rate: int) -> tuple[np.ndarray, float]:
        n = min(self._len, self.keep)
        first = self.end - n
        a, b = max(a, first), min(b, self.end)
        if b <= a:
            return np.zeros(0, dtype=np.float32), a / rate
        base = self._len - n
        return self._store[base + a - first: base + b - first].copy(), a / rate


def _params(p: Any) -> DetectionParams:
    if p is None:
        return DetectionParams()
    if isinstance(p, DetectionParams):
        return p
    if isinstance(p, dict):
        return DetectionParams(**p)
    return DetectionParams.from_settings(p)


__all__ = ["SnapPipeline", "DetectionParams", "Event"]
