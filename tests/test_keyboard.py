"""Typing on a buckling-spring keyboard (trainer.keyboard): the recordings as Debian's
bucklespring-data names them, read for real from a temporary folder, and typing at a person's pace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from trainer.drumkits import EVAL_ROOM_SEEDS, rooms
from trainer.keyboard import PACKAGE, Key, load_keys, typing_track

SR = 16000


def _stroke(rng: np.random.Generator, hz: float) -> np.ndarray:
    t = np.arange(int(0.12 * 44100)) / 44100
    return (np.sin(2 * np.pi * hz * t) * np.exp(-t / 0.01) + rng.standard_normal(len(t)) * np.exp(-t / 0.002)) * 0.3


def test_load_keys_pairs_presses_with_releases_and_resamples(tmp_path: Path):
    rng = np.random.default_rng(0)
    for name in ("01-0", "01-1", "2A-0", "2a-1", "39-0"):  # 39 has no release; case of the code ignored
        sf.write(str(tmp_path / f"{name}.wav"), _stroke(rng, 2000).astype(np.float32), 44100)
    (tmp_path / "notes.txt").write_text("not a key")
    keys = load_keys(tmp_path, SR)
    assert [k.code for k in keys] == ["01", "2a"]
    assert all(k.down.dtype == np.float32 and len(k.down) == pytest.approx(0.12 * SR, abs=2) for k in keys)
    assert not np.array_equal(keys[0].down, keys[0].up)  # the two strokes are different files


def test_missing_keyboard_folder_names_the_package(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=PACKAGE):
        load_keys(tmp_path / "none", SR)


def test_typing_track_types_at_a_persons_pace_at_the_levels_it_says():
    rng = np.random.default_rng(1)
    r2 = np.random.default_rng(2)
    keys = [Key(f"{i:02x}", _stroke(r2, 1500 + 300 * i)[::3].astype(np.float32),
                _stroke(r2, 900 + 200 * i)[::3].astype(np.float32)) for i in range(4)]
    bed = (rng.standard_normal(40 * SR) * 10 ** (-45 / 20)).astype(np.float32)
    x, events = typing_track(keys, bed, SR, rooms(EVAL_ROOM_SEEDS[:1], SR), rng, snr_db=(5.0, 12.0))
    assert x.shape == bed.shape and x.dtype == np.float32
    downs = [e for e in events if e["stroke"] == "down"]
    ups = [e for e in events if e["stroke"] == "up"]
    assert len(downs) == len(ups) > 40  # every key goes down and comes up
    for d, u in zip(downs, ups):
        assert d["key"] == u["key"] and 0.06 - 1e-3 <= u["time"] - d["time"] <= 0.14 + 1e-3
    gaps = np.diff([d["time"] for d in downs])
    assert gaps.min() >= 1 / 9 - 1e-3  # no faster than 9 keys a second
    assert 4 <= 1 / np.median(gaps) <= 9  # within words, a typist's pace
    assert (gaps > 0.5).sum() >= 2  # and pauses between phrases
    assert all(5 <= e["snr_db"] <= 12 for e in events)
    # the strokes are in the audio where the events say, above the quiet room
    added = x.astype(np.float64) - bed  # (quiet enough that the track is not scaled to its peak)
    assert np.abs(x).max() < 0.95
    for d in downs[:20]:
        at = int(d["time"] * SR)
        assert np.abs(added[at: at + int(0.01 * SR)]).max() > 3 * np.abs(bed[at: at + int(0.01 * SR)]).max()


def _keyboard(root: Path, codes: list[str]) -> Path:
    rng = np.random.default_rng(7)
    for c in codes:
        for stroke in ("0", "1"):
            sf.write(str(root / f"{c}-{stroke}.wav"), _stroke(rng, 2500)[::2].astype(np.float32), 22050)
    return root


def test_keys_split_in_two_halves_for_good(tmp_path: Path):
    from trainer.keyboard import key_split

    codes = [f"{i:02x}" for i in range(1, 41)]
    _keyboard(tmp_path, codes)
    train = {k.code for k in load_keys(tmp_path, SR, "train")}
    evals = {k.code for k in load_keys(tmp_path, SR, "eval")}
    assert train and evals and not train & evals and train | evals == set(codes)
    assert 0.25 < len(train) / len(codes) < 0.75
    assert all(key_split(c) == "train" for c in train) and key_split("1C") == key_split("1c")


def test_training_typing_uses_the_train_keys_and_joins_the_training_backgrounds(tmp_path: Path):
    from trainer.data import ClipBank, add_typing
    from trainer.keyboard import key_split, training_tracks

    codes = [f"{i:02x}" for i in range(1, 21)]
    _keyboard(tmp_path, codes)
    rng = np.random.default_rng(0)
    beds = [(rng.standard_normal(3 * SR) * 0.01).astype(np.float32)]
    tracks = training_tracks(SR, 20.0, beds, tmp_path, seed=1, track_seconds=10.0)
    assert len(tracks) == 2 and all(len(t) == 10 * SR for t in tracks)
    bank = ClipBank(sample_rate=SR)
    bank.backgrounds["train"] = list(beds)
    bank.background_kinds["train"] = ["household"]
    assert add_typing(bank, 60.0, tmp_path, seed=1) == 60  # in 30 s tracks
    assert bank.background_kinds["train"] == ["household", "typing", "typing"]
    # a keyboard with only evaluation keys gives no training typing
    only_eval = tmp_path / "eval-only"
    only_eval.mkdir()
    _keyboard(only_eval, [c for c in codes if key_split(c) == "eval"])
    with pytest.raises(FileNotFoundError, match="no training keys"):
        training_tracks(SR, 10.0, beds, only_eval)


def test_train_and_polish_refuse_bad_typing_seconds(capsys):
    from trainer import cli

    assert cli.main(["polish", "models/snap-default.pt", "--out", "/tmp/never.pt", "--typing", "-1"]) == 2
    assert "--typing" in capsys.readouterr().err
