"""The two filters the listener needs, in numpy alone.

scipy.signal costs the listener ~70 MB of resident memory just to import; these are the same
designs (scipy's `butter` high-pass and `firwin` Kaiser low-pass, checked against scipy in
tests/test_dsp.py), so the live path needs no scipy.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def kaiser_lowpass(numtaps: int, cutoff: float, beta: float) -> np.ndarray:
    """= scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta)): cutoff relative to Nyquist,
    scaled to unit gain at DC."""
    m = np.arange(numtaps) - (numtaps - 1) / 2.0
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, beta)
    return h / h.sum()


@lru_cache(maxsize=32)
def butter_highpass_ir(order: int, cutoff_hz: float, sample_rate: int, rel_tol: float = 1e-9) -> np.ndarray:
    """Impulse response of scipy.signal.butter(order, cutoff_hz, "highpass", fs=sample_rate),
    truncated where it has decayed below rel_tol of its peak (a few hundred samples)."""
    fs2 = 2.0 * sample_rate
    warped = fs2 * np.tan(np.pi * cutoff_hz / sample_rate)
    k = np.arange(-order + 1, order, 2)
    proto = -np.exp(1j * np.pi * k / (2 * order))  # analog Butterworth low-pass poles, unit cutoff
    poles_s = warped / proto  # low-pass -> high-pass: zeros at s = 0
    poles_z = (fs2 + poles_s) / (fs2 - poles_s)  # bilinear transform
    zeros_z = np.ones(order)  # s = 0 maps to z = 1
    b = np.real(np.poly(zeros_z))
    a = np.real(np.poly(poles_z))
    # unit gain at Nyquist (z = -1), as a Butterworth high-pass has
    b *= np.abs(np.polyval(a, -1.0) / np.polyval(b, -1.0))
    n = 64
    while True:
        h = _lfilter_impulse(b, a, n)
        tail = np.abs(h[-16:]).max()
        if tail <= rel_tol * np.abs(h).max() or n >= 1 << 16:
            return h
        n *= 2


def _lfilter_impulse(b: np.ndarray, a: np.ndarray, n: int) -> np.ndarray:
    a = a / a[0]
    b = b / a[0]
    y = np.zeros(n)
    for i in range(n):
        acc = b[i] if i < len(b) else 0.0
        for j in range(1, min(i, len(a) - 1) + 1):
            acc -= a[j] * y[i - j]
        y[i] = acc
    return y


def convolve_causal(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """y[n] = sum_k h[k] x[n-k], same length as x (what an FIR or IIR filter from rest gives)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return x
    if len(x) * len(h) <= 4_000_000:
        return np.convolve(x, h)[: len(x)]
    n = len(x) + len(h) - 1
    nfft = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(h, nfft), nfft)
    return y[: len(x)]
