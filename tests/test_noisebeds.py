"""Synthetic steady noise (trainer.noisebeds) under training snaps."""

import numpy as np

from snap_mqtt.detector import _OnsetGate
from snap_mqtt.onset import find_onset
from trainer.data import ClipBank, add_noise_beds
from trainer.noisebeds import TRACK_SECONDS, noise_tracks

SR = 16000


def test_tracks_are_seeded_sized_and_at_their_level():
    a, b, c = noise_tracks(SR, 30, seed=1), noise_tracks(SR, 30, seed=1), noise_tracks(SR, 30, seed=2)
    assert len(a) == 3 and all(len(x) == int(TRACK_SECONDS * SR) for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    for x in a + c:
        assert x.dtype == np.float32 and np.isfinite(x).all() and np.abs(x).max() < 1.0
        assert abs(20 * np.log10(np.sqrt(np.mean(x ** 2))) + 30) < 0.1  # -30 dBFS rms


def test_tracks_differ_in_colour():
    """Tilt and resonance vary: the share of energy above 2 kHz spreads over the tracks."""
    shares = []
    for x in noise_tracks(SR, 200, seed=0):
        p = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(len(x), 1 / SR)
        shares.append(p[f > 2000].sum() / p.sum())
    assert max(shares) > 4 * min(shares)


def test_steady_noise_holds_no_snap_like_onset():
    """The point: beds without transients of their own, so the model learns to hear snaps through
    them without a new sound to fire on. Windows of them rarely pass the detector's onset gate,
    and nowhere does the high-passed envelope jump 20 dB out of its median."""
    gate = _OnsetGate(SR, 4000, 1440, 3520)  # the shipped model's region, as the Detector searches it
    passed = total = 0
    for x in noise_tracks(SR, 100, seed=3):
        wins = np.lib.stride_tricks.sliding_window_view(x, 4000)[::320]
        passed += int(gate.candidates(wins).sum())
        total += len(wins)
        o = find_onset(x, SR)
        assert o is not None and o.prominence_db < 20
    assert passed < 0.1 * total


def test_noise_beds_grow_only_the_training_backgrounds():
    b = ClipBank(sample_rate=SR)
    assert add_noise_beds(b, 0) == 0 and not b.backgrounds["train"]
    assert add_noise_beds(b, 20, seed=1) == 20
    assert b.background_kinds["train"] == ["noise", "noise"] and not b.backgrounds["val"]
