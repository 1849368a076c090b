"""Synthetic steady noise to lay under training snaps: running water, fans, hum, road rumble.

The recorded training backgrounds are mostly keyboards (88 of 111 files: a few keystrokes over near
silence), so a snap mixed "at 5 dB" into one of them is mostly a snap in a quiet room, while the
evaluation's dishes, taps and exercise bike are steady broadband noise where the snap's onset barely
stands out. These tracks are stationary by construction (no onsets of their own), so they teach the
model to hear a snap through noise without teaching it any new transient to fire on.

Each track: white noise shaped to a random spectral tilt (-9 to +1.5 dB per octave) with a broad
resonance (+0 to +12 dB somewhere in 250 Hz - 4 kHz), slowly modulated in level (0.3-6 Hz, up to
+-40 %: water, a fan's beat), and now and then mains or motor hum under it. Seeded.
"""

from __future__ import annotations

import numpy as np

TRACK_SECONDS = 10.0
LEVEL_DBFS = -30.0  # rms; the mixer rescales to its SNR anyway


def noise_track(rate: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    n = int(round(seconds * rate))
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    octaves = np.log2(np.maximum(f, 20.0) / 1000.0)
    gain_db = rng.uniform(-9.0, 1.5) * octaves
    centre, width = rng.uniform(np.log2(0.25), np.log2(4.0)), rng.uniform(0.5, 2.0)
    gain_db += rng.uniform(0.0, 12.0) * np.exp(-0.5 * ((octaves - centre) / width) ** 2)
    gain = 10 ** (gain_db / 20)
    gain[f < rng.uniform(20.0, 120.0)] = 0.0  # no DC or sub-bass a microphone would not pass
    x = np.fft.irfft(spec * gain, n)
    # slow level modulation: low-passed noise, 0.3-6 Hz
    mod_rate = rng.uniform(0.3, 6.0)
    k = max(2, int(rate / mod_rate))
    m = np.convolve(rng.standard_normal(n + k), np.hanning(k), mode="valid")[:n]
    m /= np.abs(m).max() + 1e-12
    x *= 1.0 + rng.uniform(0.0, 0.4) * m
    if rng.random() < 0.3:  # mains or motor hum and a few harmonics
        f0 = rng.choice([50.0, 60.0, rng.uniform(80.0, 400.0)])
        t = np.arange(n) / rate
        hum = sum(rng.uniform(0.1, 1.0) / h * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi))
                  for h in range(1, 6))
        x += hum * np.sqrt(np.mean(x ** 2)) * 10 ** (rng.uniform(-20.0, 0.0) / 20) / np.sqrt(np.mean(hum ** 2))
    x *= 10 ** (LEVEL_DBFS / 20) / (np.sqrt(np.mean(x ** 2)) + 1e-12)
    return x.astype(np.float32)


def noise_tracks(rate: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    """`seconds` of steady noise as tracks of TRACK_SECONDS (one background file each)."""
    rng = np.random.default_rng([seed, 0x6E6F])
    n = max(1, int(round(seconds / TRACK_SECONDS))) if seconds > 0 else 0
    return [noise_track(rate, TRACK_SECONDS, rng) for _ in range(n)]
