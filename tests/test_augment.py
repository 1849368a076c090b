"""Augmentation: shapes, ranges, and that each transform does what it says, on real clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from snap_mqtt.audio_io import read_audio
from snap_mqtt.onset import find_onset, snap_onset
from trainer import augment as aug
from trainer.data import ClipBank, MixConfig, WindowSampler, WindowSpec, load_clip_bank, scan_data

SR = 16000


@pytest.fixture(scope="module")
def snap(fixtures_dir) -> tuple[np.ndarray, int]:
    f = sorted((fixtures_dir / "audio" / "snap").glob("*.flac"))[0]
    x = read_audio(f, SR).samples
    return x, snap_onset(x, SR)


@pytest.fixture(scope="module")
def bank(fixtures_dir):
    root = fixtures_dir / "audio"
    return load_clip_bank(scan_data(root), root, SR)


def test_time_shift_keeps_shape_and_content(snap):
    x, _ = snap
    rng = np.random.default_rng(0)
    y = aug.time_shift(x, 0.2, rng)
    assert y.shape == x.shape
    assert np.allclose(np.sort(y), np.sort(x))  # a roll: same samples, other order
    shifts = {int(np.argmax(aug.time_shift(x, 0.2, np.random.default_rng(s)))) for s in range(8)}
    assert len(shifts) > 1


def test_random_gain_range_and_clipping():
    rng = np.random.default_rng(1)
    x = np.full(100, 0.1, dtype=np.float32)
    for _ in range(50):
        y = aug.random_gain(x, rng, -18, 6)
        g_db = 20 * np.log10(y[0] / 0.1)
        assert -18.0 - 1e-3 <= g_db <= 6.0 + 1e-3
        assert y.dtype == np.float32
    loud = aug.random_gain(np.full(10, 0.9, np.float32), np.random.default_rng(2), 6, 6)
    assert loud.max() <= 1.0


def test_band_limit_removes_high_frequencies():
    t = np.arange(SR) / SR
    low = np.sin(2 * np.pi * 1000 * t)
    high = np.sin(2 * np.pi * 7500 * t)
    y_low = aug.band_limit(low.astype(np.float32), SR, 100, 4000)
    y_high = aug.band_limit(high.astype(np.float32), SR, 100, 4000)
    assert aug.rms(y_low[2000:]) > 0.6  # passband kept
    assert aug.rms(y_high[2000:]) < 0.05  # 7.5 kHz gone, as with a cheap 16 kHz-class microphone


def test_snap_segment_and_overlay_place_the_onset(snap):
    x, onset = snap
    seg, lead = aug.snap_segment(x, onset, pre=320, post=4000)
    assert 0 < lead <= 320 and seg[0] == pytest.approx(0.0, abs=1e-6)  # faded in
    base = np.zeros(4000, dtype=np.float32)
    for p in (1440, 2400, 3360):
        w = aug.overlay(base, seg, p - lead)
        assert w.shape == (4000,)
        found = find_onset(w, SR).index
        assert abs(found - p) <= 16, (found, p)
    # placed before the window: only its tail remains; after: nothing
    assert np.any(aug.overlay(base, seg, -lead - 500) != 0)
    assert not np.any(aug.overlay(base, seg, 4000))


def test_scale_to_snr():
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.3, 4000).astype(np.float32)
    for snr in (-3.0, 10.0, 30.0):
        y = aug.scale_to_snr(0.1, noise, snr)
        assert 20 * np.log10(0.1 / aug.rms(y)) == pytest.approx(snr, abs=1e-3)


def test_crop_pads_short_input():
    rng = np.random.default_rng(4)
    assert aug.crop(np.ones(10, np.float32), 100, rng).sum() == 10
    assert aug.crop(np.arange(1000, dtype=np.float32), 100, rng).shape == (100,)


def test_spec_augment_masks_with_mean_and_keeps_shape():
    g = torch.Generator().manual_seed(0)
    spec = torch.randn(16, 1, 40, 26, generator=g)
    out = spec_out = aug.spec_augment(spec, freq_masks=2, time_masks=1, max_freq=0.15, max_time_frames=2, generator=g)
    assert out.shape == spec.shape
    changed = spec_out != spec
    assert changed.any()
    # a frequency mask never covers more than 2 x 15 % of the mels plus a 2-frame time mask
    per_example = changed.float().mean(dim=(1, 2, 3))
    assert float(per_example.max()) <= (2 * 6 * 26 + 2 * 40) / (40 * 26) + 1e-6
    assert torch.equal(spec, spec.clone())  # input untouched


def test_sampler_windows_shapes_labels_and_ranges(bank):
    spec = WindowSpec()
    s = WindowSampler(bank, "train", spec, MixConfig())
    rng = np.random.default_rng(5)
    labels, kinds = [], set()
    for _ in range(120):
        x, y, k = s.draw(rng)
        assert x.shape == (spec.window_samples,) and x.dtype == np.float32
        assert np.all(np.isfinite(x)) and np.abs(x).max() <= 1.0
        labels.append(y)
        kinds.add(k)
    assert 0.3 < np.mean(labels) < 0.7
    assert kinds == {"positive", "no_snap", "background", "early", "late"}


def test_positive_windows_have_the_onset_in_the_positive_region(bank):
    spec = WindowSpec()
    # a quiet bed, so the only transient in each window is the placed snap
    quiet = {k: [np.random.default_rng(7).normal(0, 1e-4, 4000).astype(np.float32)] for k in ("train", "val", "test")}
    clean = ClipBank(sample_rate=SR, snaps=bank.snaps, no_snaps=quiet)
    s = WindowSampler(clean, "train", spec, MixConfig(augment=False, p_background_mix=0.0, p_second_snap=0.0))
    rng = np.random.default_rng(6)
    for _ in range(30):
        o = find_onset(s.positive(rng), SR)
        assert spec.onset_min - 40 <= o.index <= spec.onset_max + 40


@pytest.mark.parametrize("factor", [0.85, 1.18])
def test_speed_moves_pitch_and_length_together(factor):
    t = np.arange(SR) / SR
    x = np.sin(2 * np.pi * 1000 * t).astype(np.float32)  # 1 s of 1 kHz
    y = aug.speed(x, factor)
    assert len(y) == pytest.approx(SR / factor, rel=0.01)
    peak_hz = np.argmax(np.abs(np.fft.rfft(y))) * SR / len(y)
    assert peak_hz == pytest.approx(1000 * factor, rel=0.01)


def test_speed_variants_grow_only_the_training_speech_and_music():
    from trainer.data import add_speed_variants

    rng = np.random.default_rng(0)
    b = ClipBank(sample_rate=SR)
    for split in ("train", "val", "test"):
        for kind, sec in (("speech", 2.0), ("keyboard", 3.0), ("music", 4.0)):
            b.backgrounds[split].append(rng.standard_normal(int(sec * SR)).astype(np.float32))
            b.background_kinds[split].append(kind)
    before = {s: [x.copy() for x in b.backgrounds[s]] for s in ("train", "val", "test")}
    added = add_speed_variants(b, (0.9, 1.1))
    assert b.background_kinds["train"] == ["speech", "keyboard", "music", "speech", "speech", "music", "music"]
    assert [len(x) for x in b.backgrounds["train"][3:]] == pytest.approx(
        [2 * SR / 0.9, 2 * SR / 1.1, 4 * SR / 0.9, 4 * SR / 1.1], abs=1)
    assert all(np.array_equal(x, y) for x, y in zip(b.backgrounds["train"], before["train"]))  # originals kept
    for split in ("val", "test"):  # held-out audio stays as recorded
        assert len(b.backgrounds[split]) == 3
        assert all(np.array_equal(x, y) for x, y in zip(b.backgrounds[split], before[split]))
    assert added == round((2 + 4) * (1 / 0.9 + 1 / 1.1))
