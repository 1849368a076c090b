"""Synthetic drum-kit music, as training negatives.

The data's training music is a string orchestra, a celesta piece and a solo trumpet: not one drum.
Pop and jazz on a radio or TV are full of drums, and a closed hi-hat, a snare or a rim click is a
short broadband transient much like a snap; in the held-out music most of the evaluation's false
triggers fall on such hits. These tracks give training something to learn that from: a seeded,
random drum kit (kick, snare, hi-hats, rim/woodblock clicks, toms, shaker) playing humanised
16-step patterns over a bass line and plucked chords, with a little room reverb.

No hand claps: the simulated rooms of `trainer.simroom` measure claps as an unseen look-alike.

Pure numpy/scipy; everything at the model's rate (what the model hears of a 44.1 kHz recording).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

TRACK_SECONDS = 30.0


def _t(rate: int, seconds: float) -> np.ndarray:
    return np.arange(int(seconds * rate)) / rate


def _band(x: np.ndarray, rate: int, lo: float | None, hi: float | None, order: int = 2) -> np.ndarray:
    nyq = 0.49 * rate
    if lo is not None and hi is not None and hi < nyq:
        sos = butter(order, [lo, hi], btype="bandpass", fs=rate, output="sos")
    elif lo is not None:
        sos = butter(order, min(lo, nyq * 0.9), btype="highpass", fs=rate, output="sos")
    elif hi is not None and hi < nyq:
        sos = butter(order, hi, btype="lowpass", fs=rate, output="sos")
    else:
        return x
    return sosfilt(sos, x)


# ------------------------------------------------------------------------------------------
# one voice each: fixed by a kit's parameters, varied a little per hit

def kick(rate: int, rng: np.random.Generator, p: dict) -> np.ndarray:
    t = _t(rate, 0.4)
    f = p["kick_f1"] + (p["kick_f0"] - p["kick_f1"]) * np.exp(-t / 0.03)  # pitch drops fast
    body = np.sin(2 * np.pi * np.cumsum(f) / rate) * np.exp(-t / p["kick_decay"])
    click = _band(rng.standard_normal(len(t)), rate, 1000, None) * np.exp(-t / 0.002) * p["kick_click"]
    return body + click


def snare(rate: int, rng: np.random.Generator, p: dict) -> np.ndarray:
    t = _t(rate, 0.35)
    tone = np.sin(2 * np.pi * p["snare_f"] * t) * np.exp(-t / 0.04)
    wires = _band(rng.standard_normal(len(t)), rate, p["snare_lo"], None) * np.exp(-t / p["snare_decay"])
    return p["snare_tone"] * tone + wires


def hihat(rate: int, rng: np.random.Generator, p: dict, open_: bool = False) -> np.ndarray:
    t = _t(rate, 0.5 if open_ else 0.12)
    # metallic: six detuned square waves (the classic 808 recipe) plus noise, high-passed
    sq = sum(np.sign(np.sin(2 * np.pi * f * t)) for f in p["hat_freqs"])
    src = 0.5 * sq / 6 + rng.standard_normal(len(t)) * p["hat_noise"]
    decay = p["hat_open_decay"] if open_ else p["hat_decay"] * rng.uniform(0.8, 1.25)
    return _band(src, rate, p["hat_lo"], None, order=4) * np.exp(-t / decay)


def rim(rate: int, rng: np.random.Generator, p: dict) -> np.ndarray:
    """Rim click, woodblock, clave, cowbell: a click and one or two short resonances."""
    t = _t(rate, 0.12)
    y = sum(np.sin(2 * np.pi * f * t) * np.exp(-t / p["rim_decay"]) for f in p["rim_freqs"])
    click = _band(rng.standard_normal(len(t)), rate, 2000, None) * np.exp(-t / 0.0008) * p["rim_click"]
    return y + click


def tom(rate: int, rng: np.random.Generator, p: dict, k: int) -> np.ndarray:
    t = _t(rate, 0.4)
    f0 = p["tom_f"] * (1.0 + 0.35 * k)
    f = f0 * (1 + 0.3 * np.exp(-t / 0.05))
    return np.sin(2 * np.pi * np.cumsum(f) / rate) * np.exp(-t / 0.12) \
        + 0.2 * _band(rng.standard_normal(len(t)), rate, 800, None) * np.exp(-t / 0.01)


def shaker(rate: int, rng: np.random.Generator, p: dict) -> np.ndarray:
    t = _t(rate, 0.09)
    env = (t / 0.015) * np.exp(1 - t / 0.015)  # soft attack: swish, not click
    return _band(rng.standard_normal(len(t)), rate, 3000, None) * env


def pluck(rate: int, rng: np.random.Generator, f0: float, seconds: float, bright: float) -> np.ndarray:
    """A plucked or struck string (guitar, piano-ish): harmonics, the higher dying faster."""
    t = _t(rate, seconds)
    y = np.zeros(len(t))
    for h in range(1, 12):
        f = f0 * h * (1 + 0.0005 * h * h)  # a little inharmonicity
        if f > 0.45 * rate:
            break
        y += (bright ** (h - 1)) / h * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)) * np.exp(-t * (1.5 + 1.2 * h))
    attack = np.minimum(1.0, t / 0.002)
    return y * attack


def bass(rate: int, f0: float, seconds: float) -> np.ndarray:
    t = _t(rate, seconds)
    y = np.sin(2 * np.pi * f0 * t) + 0.3 * np.sin(4 * np.pi * f0 * t)
    return y * np.minimum(1.0, t / 0.01) * np.exp(-t / 0.6)


# ------------------------------------------------------------------------------------------
# a kit, patterns and a track

@dataclass(frozen=True)
class Track:
    audio: np.ndarray
    tempo_bpm: float
    voices: tuple[str, ...]


def _kit(rng: np.random.Generator) -> dict:
    return {
        "kick_f0": rng.uniform(100, 180), "kick_f1": rng.uniform(40, 70), "kick_decay": rng.uniform(0.08, 0.3),
        "kick_click": rng.uniform(0.0, 0.6),
        "snare_f": rng.uniform(150, 260), "snare_lo": rng.uniform(800, 2500), "snare_decay": rng.uniform(0.05, 0.2),
        "snare_tone": rng.uniform(0.2, 1.0),
        "hat_freqs": tuple(rng.uniform(200, 800, 6)), "hat_noise": rng.uniform(0.2, 1.0),
        "hat_lo": rng.uniform(4000, 7000), "hat_decay": rng.uniform(0.015, 0.06), "hat_open_decay": rng.uniform(0.15, 0.4),
        "rim_freqs": tuple(rng.uniform(500, 3000, int(rng.integers(1, 3)))), "rim_decay": rng.uniform(0.005, 0.03),
        "rim_click": rng.uniform(0.2, 1.0),
        "tom_f": rng.uniform(80, 160),
    }


# (voice, how likely a song has it, hits per bar of 16 steps drawn from this range)
_VOICES = (("kick", 0.9, (2, 5)), ("snare", 0.85, (1, 3)), ("hat", 0.9, (4, 16)), ("open_hat", 0.35, (1, 2)),
           ("rim", 0.5, (1, 5)), ("tom", 0.3, (1, 3)), ("shaker", 0.3, (4, 16)))


def _pattern(rng: np.random.Generator, voice: str, hits: tuple[int, int]) -> np.ndarray:
    n = int(rng.integers(hits[0], hits[1] + 1))
    if voice == "snare":
        base = [4, 12][: n] + list(rng.choice([2, 6, 10, 14, 15], max(0, n - 2), replace=False))
        return np.array(sorted(set(base)))
    if voice == "kick":
        return np.array(sorted(set([0] + list(rng.choice(range(1, 16), n - 1, replace=False)))))
    if voice in ("hat", "shaker"):
        step = 16 // n if 16 % n == 0 else 0
        return np.arange(0, 16, step) if step else np.sort(rng.choice(16, n, replace=False))
    return np.sort(rng.choice(16, n, replace=False))


def synth_track(rate: int, seconds: float, rng: np.random.Generator) -> Track:
    """One song: a drum kit with humanised patterns (fills every few bars), bass, plucked chords."""
    n = int(seconds * rate)
    out = np.zeros(n + rate)  # a second of room for the last hits' tails
    tempo = float(rng.uniform(70, 170))
    step_s = 60.0 / tempo / 4
    swing = rng.uniform(0, 0.25) * step_s
    kit = _kit(rng)
    voices = [(v, h) for v, p, h in _VOICES if rng.random() < p] or [("hat", (4, 16))]
    gains = {v: 10 ** (rng.uniform(-12, 0) / 20) for v, _ in voices}
    patterns = {v: _pattern(rng, v, h) for v, h in voices}
    voice_hit = {"kick": lambda: kick(rate, rng, kit), "snare": lambda: snare(rate, rng, kit),
                 "hat": lambda: hihat(rate, rng, kit), "open_hat": lambda: hihat(rate, rng, kit, open_=True),
                 "rim": lambda: rim(rate, rng, kit), "tom": lambda: tom(rate, rng, kit, int(rng.integers(3))),
                 "shaker": lambda: shaker(rate, rng, kit)}
    bars = int(np.ceil(seconds / (16 * step_s)))
    for bar in range(bars):
        fill = bar % 4 == 3 and rng.random() < 0.5
        for v, h in voices:
            steps = _pattern(rng, v, h) if fill or rng.random() < 0.15 else patterns[v]
            for s in steps:
                at = (bar * 16 + s) * step_s + (swing if s % 2 else 0.0) + rng.normal(0, 0.004)
                i = int(at * rate)
                if not 0 <= i < n:
                    continue
                hit = voice_hit[v]()
                hit = hit / (np.abs(hit).max() + 1e-9) * gains[v] * rng.uniform(0.5, 1.0)
                out[i: i + len(hit)] += hit[: len(out) - i]
    # harmony: a bass note per beat or half-bar, plucked chords on some beats
    root = 55.0 * 2 ** (rng.integers(0, 12) / 12)
    scale = np.array([0, 2, 3, 5, 7, 8, 10]) if rng.random() < 0.5 else np.array([0, 2, 4, 5, 7, 9, 11])
    bass_gain, chord_gain = 10 ** (rng.uniform(-12, 0) / 20), 10 ** (rng.uniform(-18, -3) / 20)
    bright = rng.uniform(0.3, 0.8)
    beat = 4 * step_s
    for b in range(int(seconds / beat)):
        i = int(b * beat * rate)
        if b % 4 == 0:
            root_deg = int(rng.choice(len(scale)))
        f = root * 2 ** (scale[root_deg] / 12)
        if rng.random() < 0.8:
            y = bass(rate, f, beat * rng.choice([1, 2]))
            out[i: i + len(y)] += bass_gain * y[: len(out) - i]
        if rng.random() < 0.5:
            for d in (0, 2, 4):
                deg = (root_deg + d) % len(scale)
                y = pluck(rate, rng, 2 * f * 2 ** ((scale[deg] - scale[root_deg]) % 12 / 12), 1.2, bright)
                j = i + int(rng.uniform(0, 0.03) * rate)  # a strum
                out[j: j + len(y)] += chord_gain / 3 * y[: len(out) - j]
    # a room: exponentially decaying noise, mixed in
    rt = rng.uniform(0.15, 0.8)
    ir_t = _t(rate, rt)
    ir = rng.standard_normal(len(ir_t)) * np.exp(-6.9 * ir_t / rt)
    wet = fftconvolve(out, ir)[: len(out)]
    out = out + wet / (np.abs(wet).max() + 1e-9) * np.abs(out).max() * rng.uniform(0.05, 0.4)
    out = out[:n]
    out = 0.3 * out / (np.sqrt(np.mean(out ** 2)) + 1e-12) * 10 ** (rng.uniform(-20, -6) / 20)
    return Track(np.clip(out, -1, 1).astype(np.float32), tempo, tuple(v for v, _ in voices))


def synth_tracks(rate: int, seconds: float, seed: int, track_seconds: float = TRACK_SECONDS) -> list[Track]:
    """`seconds` of songs, `track_seconds` each; the same seed gives the same audio."""
    rng = np.random.default_rng([seed, 7919])
    n = max(1, int(round(seconds / track_seconds)))
    return [synth_track(rate, track_seconds, rng) for _ in range(n)]


__all__ = ["Track", "synth_track", "synth_tracks"]
