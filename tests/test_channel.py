"""The user's channel, estimated from snaps (trainer.channel), and its use in enrollment's batches."""

import numpy as np
import pytest
from scipy.signal import butter, sosfilt, sosfreqz

from trainer import finetune as ft
from trainer.channel import apply_channel, estimate_channel, mean_snap_power, smooth_octaves
from trainer.data import SnapClip

RATE = 16000


def _bursts(n: int, rng: np.random.Generator, onset: int = 8000) -> list[SnapClip]:
    """Snap-like clips: a 50 ms decaying noise burst at `onset` in 2 s of silence."""
    out = []
    for i in range(n):
        x = np.zeros(2 * RATE, dtype=np.float32)
        k = 800
        x[onset:onset + k] = rng.standard_normal(k) * np.exp(-np.arange(k) / 120) * rng.uniform(0.1, 1.0)
        out.append(SnapClip(f"b{i}", x, onset))
    return out


def test_estimate_recovers_a_known_colouring():
    rng = np.random.default_rng(0)
    reference = _bursts(60, rng)
    band = butter(2, [1500, 3000], btype="bandpass", fs=RATE, output="sos")
    user = [SnapClip(c.name, (c.samples + 2 * sosfilt(band, c.samples)).astype(np.float32), c.onset)
            for c in _bursts(40, rng)]
    ch = estimate_channel(user, reference, RATE)
    freqs = [250, 1000, 2000, 4000, 7000]
    _, h = sosfreqz(band, worN=freqs, fs=RATE)
    truth = 20 * np.log10(np.abs(1 + 2 * h))
    est = np.array([ch.gain_at(f) for f in freqs])
    # the shape (relative to 250 Hz) within 2 dB; the overall level is not estimated on purpose
    assert np.allclose(est - est[0], truth - truth[0], atol=2.0), (est, truth)
    assert ch.gain_at(2000) - ch.gain_at(250) > 6  # the boost is there
    # the FIR does what the curve says
    spectrum = np.abs(np.fft.rfft(ch.fir, ch.n_fft))
    fir_db = 20 * np.log10(spectrum[[int(f * ch.n_fft / RATE) for f in freqs]])
    assert np.allclose(fir_db - fir_db[0], est - est[0], atol=1.5)


def test_same_snaps_give_a_flat_channel_and_the_filter_passes_them_unchanged():
    rng = np.random.default_rng(1)
    clips = _bursts(30, rng)
    ch = estimate_channel(clips, clips, RATE)
    assert np.max(np.abs(ch.gain_db)) < 0.5
    x = clips[0].samples
    y = apply_channel(x, ch)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.sqrt(np.mean((y - x) ** 2)) < 0.1 * np.sqrt(np.mean(x ** 2))


def test_the_filter_is_causal_and_front_loaded():
    """Minimum phase: nothing before a transient (no pre-echo a real room could not make)."""
    rng = np.random.default_rng(2)
    reference = _bursts(40, rng)
    low = butter(4, 2500, btype="lowpass", fs=RATE, output="sos")
    user = [SnapClip(c.name, sosfilt(low, c.samples).astype(np.float32), c.onset) for c in _bursts(40, rng)]
    ch = estimate_channel(user, reference, RATE)
    impulse = np.zeros(4000, dtype=np.float32)
    impulse[2000] = 1.0
    y = apply_channel(impulse, ch)
    assert np.max(np.abs(y[:2000])) < 1e-6  # (fft rounding only)
    energy = np.cumsum(y[2000:] ** 2)
    assert energy[80] > 0.9 * energy[-1]  # 90 % of it within 5 ms
    assert ch.gain_at(6000) < ch.gain_at(1000) - 10  # the low-pass was found


def test_estimate_clamps_and_refuses_clips_without_audio():
    rng = np.random.default_rng(3)
    reference = _bursts(20, rng)
    high = butter(6, 4000, btype="highpass", fs=RATE, output="sos")
    user = [SnapClip(c.name, sosfilt(high, c.samples).astype(np.float32), c.onset) for c in _bursts(20, rng)]
    ch = estimate_channel(user, reference, RATE, max_db=12.0)
    assert ch.gain_db.max() <= 12.0 and ch.gain_db.min() >= -12.0
    with pytest.raises(ValueError, match="no snap clip"):
        mean_snap_power([SnapClip("short", np.zeros(100, np.float32), 90)])


def test_smoothing_keeps_a_flat_curve_flat_and_averages_a_spike():
    flat = np.full(513, 3.0)
    assert np.allclose(smooth_octaves(flat, RATE, 1024, 1 / 3), 3.0)
    spike = np.zeros(513)
    spike[256] = 30.0
    s = smooth_octaves(spike, RATE, 1024, 1 / 3)
    assert 0 < s[256] < 30 and s[250] > 0 and s[100] == 0


def test_batches_play_shipped_windows_through_the_users_channel_at_the_set_share():
    """channel_match: that share of the shipped sampler's windows and shipped hard windows go
    through the channel; the user's own windows never do."""
    rng = np.random.default_rng(4)

    class Const:
        def __init__(self, value):
            self.value = value

        def draw(self, rng):
            return np.full(4000, self.value, dtype=np.float32), 0, "negative"

    # a channel that scales by -1: filtered windows are told apart by their sign
    ch = estimate_channel(_bursts(10, rng), _bursts(10, rng), RATE)
    ch = type(ch)(ch.sample_rate, ch.n_fft, ch.gain_db, np.array([-1.0], dtype=np.float32))
    # no quiet draws: the windows are told apart by their values
    cfg = ft.TuneConfig(batch=400, p_hard=0.0, p_user=0.5, channel_match=0.5, quiet_negatives=0.0)
    bm = ft.BatchMaker(Const(0.25), Const(0.5), [], 4000, 320, cfg)
    bm.channel = ch
    x, _ = bm(rng)
    first = x[:, 0]
    user, shipped, flipped = np.sum(first == 0.25), np.sum(first == 0.5), np.sum(first == -0.5)
    assert user + shipped + flipped == 400
    assert 150 < user < 250 and 0.35 < flipped / (shipped + flipped) < 0.65
    # hard windows: the user's room (index 0) never, the shipped data's (index 1) at the share
    room = [np.full(8000, 0.25, np.float32), np.full(8000, 0.5, np.float32)]
    bm = ft.BatchMaker(Const(0.25), None, room, 4000, 320, ft.TuneConfig(channel_match=1.0), user_recordings=1)
    bm.channel = ch
    bm.hard = [(0, 0)]
    assert all(np.all(bm._hard(rng) > 0) for _ in range(20))
    bm.hard = [(1, 0)]
    assert all(np.all(bm._hard(rng) < 0) for _ in range(20))
    bm.cfg = ft.TuneConfig(channel_match=0.0)
    assert all(np.all(bm._hard(rng) > 0) for _ in range(20))
