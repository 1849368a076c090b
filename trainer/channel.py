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

    def gain_at(self, hz: float) -> float:
        k = int(round(hz * self.n_fft / self.sample_rate))
        return float(self.gain_db[min(max(k, 0), len(self.gain_db) - 1)])

    def summary(self) -> dict:
        """A few points of the curve, for a model's metadata."""
        points = [125, 250, 500, 1000, 2000, 4000, 6000, 7500]
        return {"gain_db": {str(f): round(self.gain_at(f), 1) for f in points if f < self.sample_rate / 2},
                "fir_taps": int(len(self.fir))}


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
