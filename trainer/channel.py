"""The user's channel (hand, room, microphone) as an EQ, estimated from snaps, to replay the shipped
data "as if heard by the user's microphone".

Why: enrollment teaches the model the user's snaps, and the only other audio it hears through the
user's channel is a minute of their room. It then learns a shortcut: "a transient with this
colouring is a snap", and fires on that room's knocks and clinks (simulated person 2: 13 -> 62
false gestures per hour). Snaps are nearly impulses, so the ratio of the user's mean snap spectrum
to the shipped data's is an estimate of what the user's hand, room and microphone do to any sound.
Filtering the shipped negatives (and snaps) with it gives the model many more negatives with the
user's colouring. Pure functions on numpy arrays; nothing here reads files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve, minimum_phase

N_FFT = 1024  # 64 ms at 16 kHz: the snap and its early reflections
PRE = 32  # samples kept before the onset


@dataclass(frozen=True)
class Channel:
    """An EQ: `gain_db` per rfft bin of `n_fft` at `sample_rate`, and its minimum-phase FIR."""

    sample_rate: int
    n_fft: int
    gain_db: np.ndarray
    fir: np.ndarray
    reverb: dict | None = None  # the room's tail folded into `fir` (estimate_reverb), if any

    def gain_at(self, hz: float) -> float:
        k = int(round(hz * self.n_fft / self.sample_rate))
        return float(self.gain_db[min(max(k, 0), len(self.gain_db) - 1)])

    def summary(self) -> dict:
        """A few points of the curve, for a model's metadata."""
        points = [125, 250, 500, 1000, 2000, 4000, 6000, 7500]
        out = {"gain_db": {str(f): round(self.gain_at(f), 1) for f in points if f < self.sample_rate / 2},
               "fir_taps": int(len(self.fir))}
        if self.reverb is not None:
            out["reverb"] = dict(self.reverb)
        return out


def mean_snap_power(clips, n_fft: int = N_FFT, pre: int = PRE) -> np.ndarray:
    """Mean power spectrum of the first `n_fft` samples of each snap (from `pre` before its onset),
    each snap normalised to unit energy so that loud snaps do not dominate."""
    taper = np.ones(n_fft)
    fade = n_fft // 4
    taper[-fade:] = 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, fade))
    acc = np.zeros(n_fft // 2 + 1)
    n = 0
    for c in clips:
        a = max(0, int(c.onset) - pre)
        seg = np.asarray(c.samples[a:a + n_fft], dtype=np.float64)
        if len(seg) < n_fft // 2:
            continue
        seg = np.pad(seg, (0, n_fft - len(seg))) * taper
        p = np.abs(np.fft.rfft(seg)) ** 2
        total = p.sum()
        if total > 1e-12:
            acc += p / total
            n += 1
    if n == 0:
        raise ValueError("no snap clip long enough to estimate a spectrum")
    return acc / n


def smooth_octaves(values: np.ndarray, sample_rate: int, n_fft: int, fraction: float) -> np.ndarray:
    """Average each bin with its neighbours within +-fraction/2 octave (constant-Q smoothing)."""
    freqs = np.arange(len(values)) * sample_rate / n_fft
    out = np.empty_like(values)
    half = 2 ** (fraction / 2)
    csum = np.concatenate([[0.0], np.cumsum(values)])
    for k, f in enumerate(freqs):
        lo = np.searchsorted(freqs, max(f, freqs[1]) / half, "left")
        hi = np.searchsorted(freqs, max(f, freqs[1]) * half, "right")
        lo, hi = min(lo, k), max(hi, k + 1)
        out[k] = (csum[hi] - csum[lo]) / (hi - lo)
    return out


def estimate_channel(user_snaps, reference_snaps, sample_rate: int, n_fft: int = N_FFT,
                     max_db: float = 15.0, fraction: float = 1 / 3, taps: int = 255) -> Channel:
    """The EQ that turns the reference (shipped) snaps' mean spectrum into the user's: their power
    ratio, smoothed over `fraction` octave, within +-`max_db`, with 0 dB mean gain over the
    reference snaps' spectrum (level is left to the gain augmentation)."""
    pu = mean_snap_power(user_snaps, n_fft)
    pr = mean_snap_power(reference_snaps, n_fft)
    floor = 1e-9 * max(pu.max(), pr.max())
    ratio_db = 10 * np.log10((pu + floor) / (pr + floor))
    ratio_db = smooth_octaves(ratio_db, sample_rate, n_fft, fraction)
    # 0 dB where the reference snaps have their energy
    ratio_db -= 10 * np.log10(np.sum(pr * 10 ** (ratio_db / 10)) / np.sum(pr))
    gain_db = np.clip(ratio_db, -max_db, max_db)
    # a linear-phase FIR with the *squared* magnitude, made minimum-phase (which halves the log
    # magnitude): no pre-echo before a transient, as a real room and microphone would have none
    sq = 10 ** (gain_db / 10)
    h = np.fft.irfft(sq, n_fft)
    h = np.roll(h, taps // 2)[:taps] * np.hanning(taps)
    fir = minimum_phase(h, method="homomorphic", n_fft=4 * n_fft)
    return Channel(sample_rate, n_fft, gain_db, fir.astype(np.float32))


def apply_channel(x: np.ndarray, channel: Channel) -> np.ndarray:
    """`x` through the channel's FIR, same length (a minimum-phase filter delays little)."""
    x = np.asarray(x, dtype=np.float32)
    if not len(x):
        return x
    return fftconvolve(x, channel.fir)[:len(x)].astype(np.float32)


# ---------------------------------------------------------------------------------------------
# the room's tail: the EQ above is 16 ms long, a room rings for hundreds

DECAY_MS = (10, 25, 50, 100)  # where decays are compared: inside what a 250 ms window sees after an onset


@dataclass(frozen=True)
class Reverb:
    """A synthetic late tail: exponentially decaying noise, `level_db` against the direct sound's
    unit impulse (energy of the tail against 1), 60 dB down after `rt60` seconds."""

    rt60: float
    level_db: float
    ir: np.ndarray  # the impulse response, direct sound first


def reverb_ir(rt60: float, level_db: float, sample_rate: int, seconds: float = 0.3, seed: int = 0) -> np.ndarray:
    """1 (the direct sound) followed, from 2 ms, by Gaussian noise decaying 60 dB per `rt60` with
    total energy 10^(level_db / 10)."""
    n = max(2, int(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    tail = np.random.default_rng(seed).standard_normal(n) * 10 ** (-3.0 * t / rt60)
    tail[t < 0.002] = 0.0
    tail *= np.sqrt(10 ** (level_db / 10) / max(np.sum(tail ** 2), 1e-12))
    tail[0] = 1.0
    return tail.astype(np.float32)


def decay_curve(clips, sample_rate: int, times_ms=DECAY_MS, ir: np.ndarray | None = None) -> np.ndarray:
    """Median level, dB under each snap's first 20 ms peak, of the 300 Hz high-passed envelope
    (5 ms mean) at `times_ms` after the onset; each clip first filtered with `ir` when given."""
    from snap_mqtt.onset import envelope

    rows = []
    end = int(max(times_ms) * sample_rate / 1000) + int(0.005 * sample_rate)
    for c in clips:
        x = np.asarray(c.samples, dtype=np.float64)
        o = int(c.onset)
        seg = x[max(0, o - 256): o + end + 256]
        o -= max(0, o - 256)
        if len(seg) < o + end:
            continue
        if ir is not None:
            seg = fftconvolve(seg, ir)[:len(seg)]
        env = envelope(seg, sample_rate, cutoff_hz=300.0, smooth_ms=5.0)
        peak = env[o: o + int(0.02 * sample_rate)].max()
        if peak <= 1e-9:
            continue
        w = int(0.005 * sample_rate)
        rows.append([20 * np.log10(env[o + int(ms * sample_rate / 1000): o + int(ms * sample_rate / 1000) + w].mean() / peak + 1e-9)
                     for ms in times_ms])
    if not rows:
        raise ValueError("no snap clip long enough to measure a decay")
    return np.median(np.array(rows), axis=0)


def estimate_reverb(user_snaps, reference_snaps, sample_rate: int, fir: np.ndarray | None = None,
                    rt60s=(0.15, 0.25, 0.4, 0.6, 0.9), levels_db=tuple(range(-24, 13, 3)),
                    n_reference: int = 40, seed: int = 0) -> Reverb | None:
    """The tail that, after `fir`, makes the reference snaps decay most like the user's (least
    squares over `DECAY_MS`); None when the reference snaps decay as slowly as the user's already
    (no tail fits better than none)."""
    want = decay_curve(user_snaps, sample_rate)
    rng = np.random.default_rng([seed, 11])
    refs = list(reference_snaps)
    if len(refs) > n_reference:
        refs = [refs[i] for i in sorted(rng.choice(len(refs), n_reference, replace=False))]
    base_ir = np.ones(1, np.float32) if fir is None else np.asarray(fir, np.float32)
    best = (float(np.sum((decay_curve(refs, sample_rate, ir=base_ir) - want) ** 2)), None)
    for rt60 in rt60s:
        for level in levels_db:
            ir = reverb_ir(rt60, level, sample_rate, seed=seed)
            err = float(np.sum((decay_curve(refs, sample_rate, ir=np.convolve(base_ir, ir)) - want) ** 2))
            if err < best[0]:
                best = (err, Reverb(float(rt60), float(level), ir))
    return best[1]
