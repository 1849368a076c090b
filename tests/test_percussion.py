"""Synthetic drum-kit songs (trainer.percussion) as training music."""

from pathlib import Path

import numpy as np
import pytest

from snap_mqtt.detector import _OnsetGate
from trainer.data import ClipBank, add_synthetic_drums
from trainer.percussion import synth_tracks

SR = 16000
FIX = Path(__file__).resolve().parent / "fixtures" / "audio"


def test_songs_are_seeded_sized_and_in_range():
    a = synth_tracks(SR, 60, seed=3)
    b = synth_tracks(SR, 60, seed=3)
    c = synth_tracks(SR, 60, seed=4)
    assert len(a) == 2 and all(len(t.audio) == 30 * SR for t in a)
    assert all(np.array_equal(x.audio, y.audio) for x, y in zip(a, b))  # the same seed, the same audio
    assert not np.array_equal(a[0].audio, c[0].audio)
    for t in a + c:
        assert t.audio.dtype == np.float32 and np.isfinite(t.audio).all() and np.abs(t.audio).max() <= 1.0
        assert np.sqrt(np.mean(t.audio ** 2)) > 1e-3  # not silence
        assert 70 <= t.tempo_bpm <= 170 and t.voices


def test_drum_hits_are_transients_the_detector_must_judge():
    """The point of the songs: hits whose onsets pass the detector's onset gate, so the model (not
    the gate) has to tell them from snaps. Windows at the listener's 20 ms hop."""
    gate = _OnsetGate(SR, 4000, 1440, 3520)
    passed = []
    for t in synth_tracks(SR, 90, seed=0):
        wins = np.lib.stride_tricks.sliding_window_view(t.audio, 4000)[::320]
        passed.append(gate.candidates(wins).mean())
    # a song is a stream of onsets: a good share of its windows hold one in the search region
    assert min(passed) > 0.1, passed


def test_synthetic_drums_grow_only_the_training_music():
    rng = np.random.default_rng(0)
    b = ClipBank(sample_rate=SR)
    for split in ("train", "val", "test"):
        b.backgrounds[split].append(rng.standard_normal(SR).astype(np.float32))
        b.background_kinds[split].append("speech")
    assert add_synthetic_drums(b, 0) == 0 and len(b.backgrounds["train"]) == 1
    assert add_synthetic_drums(b, 60, seed=1) == 60
    assert b.background_kinds["train"] == ["speech", "music", "music"]
    assert all(len(b.backgrounds[s]) == 1 for s in ("val", "test"))  # held-out audio stays as recorded
    assert np.array_equal(b.backgrounds["train"][1], synth_tracks(SR, 60, seed=1)[0].audio)


@pytest.mark.parametrize("seconds", ["-1", "1e6"])
def test_bad_synthetic_drums_are_refused_naming_the_flag(tmp_path, capsys, seconds):
    from trainer.cli import main as snap_train

    assert snap_train(["train", "--data", str(FIX), "--out", str(tmp_path / "r"), "--synthetic-drums", seconds]) == 2
    assert "--synthetic-drums" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
