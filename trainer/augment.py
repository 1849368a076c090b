"""Augmentation: pure functions on numpy windows (and SpecAugment on torch spectrograms).

Each takes the random generator it uses, so a seeded run is reproducible. Nothing here reads files.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfilt

_SOS: dict[tuple, np.ndarray] = {}


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def time_shift(x: np.ndarray, max_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """The seed's time shift: roll by up to `max_fraction` of the length (either way)."""
    n = len(x)
    k = int(rng.integers(-int(max_fraction * n), int(max_fraction * n) + 1)) if n else 0
    return np.roll(x, k)


def random_gain(x: np.ndarray, rng: np.random.Generator, min_db: float = -18.0, max_db: float = 6.0) -> np.ndarray:
    """Scale by a random gain, clipping at full scale as a real input would."""
    g = 10 ** (rng.uniform(min_db, max_db) / 20)
    return np.clip(x * g, -1.0, 1.0).astype(np.float32)


def band_limit(x: np.ndarray, sample_rate: int, low_hz: float, high_hz: float) -> np.ndarray:
    """Band-pass like a cheap microphone: a high-pass at `low_hz` and a low-pass at `high_hz`
    (a 16 kHz microphone keeps nothing above ~7-8 kHz). `high_hz` >= Nyquist skips the low-pass."""
    key = (sample_rate, round(low_hz), round(high_hz))
    if key not in _SOS:
        nyq = sample_rate / 2
        if high_hz >= nyq * 0.98:
            _SOS[key] = butter(2, low_hz, btype="highpass", fs=sample_rate, output="sos")
        else:
            _SOS[key] = butter(4, [low_hz, high_hz], btype="bandpass", fs=sample_rate, output="sos")
    return sosfilt(_SOS[key], x).astype(np.float32)


def random_band_limit(x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    low = float(rng.uniform(40, 300))
    high = float(rng.choice([rng.uniform(3500, 7800), sample_rate / 2]))
    # round to 50 Hz so the filter cache stays small
    return band_limit(x, sample_rate, round(low / 50) * 50 or 50, round(high / 50) * 50)


def snap_segment(x: np.ndarray, onset: int, pre: int, post: int, fade: int = 32) -> tuple[np.ndarray, int]:
    """Cut a snap around its onset: up to `pre` samples before it (faded in) and up to `post`
    after (faded out if the clip ends early). Returns the segment and the onset's index in it."""
    a = max(0, onset - pre)
    b = min(len(x), onset + post)
    seg = np.array(x[a:b], dtype=np.float32)
    lead = onset - a
    if lead > 1:
        seg[:lead] *= 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, lead, dtype=np.float32))
    if b < onset + post and len(seg) > fade:
        seg[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    return seg, lead


def overlay(base: np.ndarray, seg: np.ndarray, start: int) -> np.ndarray:
    """base + seg placed at `start` (which may be negative or past the end: the overlap is added)."""
    out = np.array(base, dtype=np.float32)
    a, b = max(0, start), min(len(out), start + len(seg))
    if a < b:
        out[a:b] += seg[a - start:b - start]
    return out


def scale_to_snr(signal_level: float, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Scale `noise` so that signal_level / rms(noise) = snr_db."""
    n = rms(noise)
    if n <= 1e-9 or signal_level <= 1e-9:
        return np.asarray(noise, dtype=np.float32)
    return (noise * (signal_level / n / 10 ** (snr_db / 20))).astype(np.float32)


def snap_level(seg: np.ndarray, onset: int, sample_rate: int, ms: float = 50.0) -> float:
    """RMS of the first `ms` after the onset: the 'local' level used for SNR."""
    return rms(seg[onset:onset + int(sample_rate * ms / 1000)])


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play `x` `factor` times faster (pitch and tempo together, as a tape would): another voice or
    another tune from the same recording. Polyphase resampling, so nothing folds back from above
    Nyquist."""
    from snap_mqtt.audio_io import resample

    # 'rates' 1000 f -> 1000 (factor to 0.001); at the default factors the same ratios as before
    return resample(np.asarray(x, dtype=np.float64), int(round(1000 * factor)), 1000)


def crop(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random n-sample stretch of x, zero-padded when x is shorter."""
    if len(x) >= n:
        a = int(rng.integers(0, len(x) - n + 1))
        return np.asarray(x[a:a + n], dtype=np.float32)
    out = np.zeros(n, dtype=np.float32)
    a = int(rng.integers(0, n - len(x) + 1))
    out[a:a + len(x)] = x
    return out


def spec_augment(spec, freq_masks: int = 2, time_masks: int = 1, max_freq: float = 0.15,
                 max_time_frames: int = 2, generator=None):
    """SpecAugment on a batch [B, 1, mels, frames]: per example, `freq_masks` bands of up to
    `max_freq` of the mels and `time_masks` runs of up to `max_time_frames` frames set to the
    example's mean. Time masks stay short: a long one could hide the snap and falsify the label."""
    import torch

    b, _, n_mels, n_frames = spec.shape
    out = spec.clone()
    mean = spec.mean(dim=(1, 2, 3), keepdim=True).expand_as(spec)
    mels = torch.arange(n_mels, device=spec.device).view(1, 1, n_mels, 1)
    frames = torch.arange(n_frames, device=spec.device).view(1, 1, 1, n_frames)
    mask = torch.zeros_like(spec, dtype=torch.bool)
    for _ in range(freq_masks):
        w = torch.randint(0, max(1, int(max_freq * n_mels)) + 1, (b, 1, 1, 1), generator=generator)
        f0 = (torch.rand((b, 1, 1, 1), generator=generator) * (n_mels - w)).long()
        mask |= (mels >= f0) & (mels < f0 + w)
    for _ in range(time_masks):
        w = torch.randint(0, max_time_frames + 1, (b, 1, 1, 1), generator=generator)
        t0 = (torch.rand((b, 1, 1, 1), generator=generator) * (n_frames - w)).long()
        mask |= (frames >= t0) & (frames < t0 + w)
    out[mask] = mean[mask]
    return out
