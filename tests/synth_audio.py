"""Test helpers for the detector tests: signals with snaps at known onsets, and scorers that stand
in for a model where a test is about the detector's logic rather than the network."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snap_mqtt.detector import WindowSpec
from snap_mqtt.onset import find_onset, snap_onset

RATE = 16000
SPEC = WindowSpec(sample_rate=RATE, window_samples=4000, hop_samples=320, threshold=0.5,
                  onset_min_samples=1440, onset_max_samples=3360)
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "audio"


def click(rate: int = RATE, seconds: float = 0.06, seed: int = 0) -> np.ndarray:
    """A synthetic snap: a burst of white noise with a 1 ms rise and a ~8 ms decay."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    env = np.minimum(t / 0.001, 1.0) * np.exp(-t / 0.008)
    return (0.6 * env * rng.standard_normal(n)).astype(np.float32)


def scene(onsets: list[float], seconds: float, rate: int = RATE, noise_db: float = -60.0,
          seed: int = 1) -> np.ndarray:
    """Low noise with a click starting at each onset (seconds)."""
    rng = np.random.default_rng(seed)
    x = (10 ** (noise_db / 20) * rng.standard_normal(int(seconds * rate))).astype(np.float32)
    for i, t in enumerate(onsets):
        c = click(rate, seed=100 + i)
        a = int(round(t * rate))
        x[a: a + len(c)] += c[: len(x) - a]
    return x


def real_snap_scene(onsets: list[float], background: str | None = "keyboard", rate: int = RATE,
                    gain_db: float = 0.0, seconds: float = 8.0) -> tuple[np.ndarray, list[float]]:
    """Real snap clips from the fixtures mixed into a real background excerpt (None: low noise)
    so that each snap's own onset (found in the clip) lands at the wanted time."""
    from snap_mqtt.audio_io import read_audio

    if background is None:
        bg = scene([], seconds, rate)
    else:
        bg = 0.3 * read_audio(FIXTURES / "background" / f"{background}.flac", sample_rate=rate).samples
    clips = sorted((FIXTURES / "snap").glob("*.flac"))
    k = 0
    for t in onsets:
        while True:
            clip = read_audio(clips[k % len(clips)], sample_rate=rate).samples
            k += 1
            o = snap_onset(clip, rate)
            if o is not None:
                break
        a = int(round(t * rate)) - o
        seg = clip[max(0, -a):]
        a = max(0, a)
        bg[a: a + len(seg)] += seg[: len(bg) - a] * 10 ** (gain_db / 20)
    return bg, onsets


class TableScorer:
    """Probabilities given per window start (absolute sample index), for constructed sequences.

    The signal carries its own position: each window is recognised by its first 16 samples, so
    the scorer needs no side channel and chunking cannot fool it. Counts its forward calls."""

    def __init__(self, signal: np.ndarray, probs: dict[int, float], hop: int = SPEC.hop_samples,
                 window: int = SPEC.window_samples, phase: int = 0):
        self.index = {signal[s: s + 16].tobytes(): s for s in range(phase, len(signal) - window + 1, hop)}
        self.probs = probs
        self.calls: list[int] = []

    def __call__(self, wins: np.ndarray) -> np.ndarray:
        self.calls.append(len(wins))
        return np.array([self.probs.get(self.index[w[:16].tobytes()], 0.0) for w in wins])


def ideal_scorer(spec: WindowSpec = SPEC, min_prominence_db: float = 30.0):
    """A stand-in for a perfect model on clean synthetic scenes: probability 0.95 when a strong
    transient's onset lies in the window's positive region and nothing as strong precedes it."""

    def score(wins: np.ndarray) -> np.ndarray:
        out = np.zeros(len(wins))
        for i, w in enumerate(wins):
            o = find_onset(w, spec.sample_rate, start=spec.onset_min_samples, stop=spec.onset_max_samples + 1)
            if o is None or o.prominence_db < min_prominence_db:
                continue
            if spec.onset_min_samples < o.index <= spec.onset_max_samples:
                out[i] = 0.95
        return out

    return score
