"""Data folder scanning and loading: a split that does not depend on file order, and bad input
(corrupt, empty, silent, truncated, unsupported files; empty class; missing folder; a model file
that is not a snap model) handled with a named warning or a clear error, never a traceback."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from trainer.cli import UsageError
from trainer.data import load_clip_bank, scan_data
from trainer.splits import split_of

FIX = Path(__file__).resolve().parent / "fixtures" / "audio"
SNAPTRAIN = [sys.executable, "-m", "trainer.cli"]


def _copy_fixtures(dst: Path, reverse: bool = False, backgrounds: bool = True) -> Path:
    for sub in ("snap", "no_snap") + (("background",) if backgrounds else ()):
        (dst / sub).mkdir(parents=True)
        files = sorted((FIX / sub).glob("*.flac"), reverse=reverse)
        for f in files:  # creation order differs between the two copies
            shutil.copy2(f, dst / sub / f.name)
    return dst


def test_split_is_deterministic_and_independent_of_file_order(tmp_path):
    a = scan_data(_copy_fixtures(tmp_path / "a"))
    b = scan_data(_copy_fixtures(tmp_path / "b", reverse=True))
    # renaming the folder or adding a clip moves nothing
    extra = tmp_path / "b" / "snap" / "zz_new_clip.flac"
    shutil.copy2(next((FIX / "snap").glob("*.flac")), extra)
    c = scan_data(tmp_path / "b")
    key = lambda df: dict(zip(df.path, df.split))  # noqa: E731
    assert key(a) == key(b)
    assert {k: v for k, v in key(c).items() if k != "snap/zz_new_clip.flac"} == key(a)
    clips = a[a.label != "background"]
    assert all(split_of(Path(p).name) == s for p, s in zip(clips.path, clips.split))
    # the fixture set was picked as 10 train + 10 test clips per class
    assert (clips[clips.label == "snap"].split.value_counts().to_dict()) == {"train": 10, "test": 10}


def test_split_is_stratified_by_hash_not_by_position():
    names = [f"snap__{i:05d}.flac" for i in range(3000)]
    parts = [split_of(n) for n in names]
    share = {s: parts.count(s) / len(parts) for s in ("train", "val", "test")}
    assert abs(share["train"] - 0.70) < 0.03 and abs(share["val"] - 0.15) < 0.03
    assert [split_of(n) for n in reversed(names)] == parts[::-1]


def test_long_backgrounds_are_split_by_time(tmp_path):
    root = _copy_fixtures(tmp_path / "d", backgrounds=False)
    (root / "background" / "household").mkdir(parents=True)
    x = np.random.default_rng(0).normal(0, 0.05, 16000 * 30).astype(np.float32)
    sf.write(root / "background" / "household" / "long.flac", x, 16000)
    bank = load_clip_bank(scan_data(root), root, 16000)
    secs = {s: sum(len(b) for b in bank.backgrounds[s]) / 16000 for s in ("train", "val", "test")}
    assert secs == pytest.approx({"train": 21.0, "val": 4.5, "test": 4.5}, abs=0.01)


def test_eval_backgrounds_are_never_loaded(tmp_path):
    root = _copy_fixtures(tmp_path / "e", backgrounds=False)
    (root / "background" / "speech").mkdir(parents=True)
    shutil.copy2(FIX / "background" / "speech.flac", root / "background" / "speech" / "198-209-0000.hq.flac")
    man = scan_data(root)
    bank = load_clip_bank(man, root, 16000)
    assert man[man.label == "background"].split.tolist() == ["eval"]
    assert not any(bank.backgrounds[s] for s in ("train", "val", "test"))


def _bad_files(root: Path) -> dict[str, Path]:
    snap = root / "snap"
    rng = np.random.default_rng(1)
    bad = {
        "corrupt": snap / "corrupt.wav",
        "empty": snap / "empty.flac",
        "silent": root / "no_snap" / "silent.wav",
        "truncated": snap / "truncated.wav",
        "unsupported": snap / "clip.mp3",
        "no_snap_in_snap": snap / "hum.wav",
    }
    bad["corrupt"].write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" + rng.bytes(500))
    bad["empty"].write_bytes(b"")
    sf.write(bad["silent"], np.zeros(4000, np.float32), 16000)
    full = root / "full.wav"
    sf.write(full, rng.normal(0, 0.1, 4000).astype(np.float32), 16000)
    bad["truncated"].write_bytes(full.read_bytes()[:3000])
    full.unlink()
    bad["unsupported"].write_bytes(b"ID3" + rng.bytes(300))
    t = np.arange(4000) / 16000
    hum = 0.2 * np.sin(2 * np.pi * 220 * t) * np.hanning(len(t))  # swells and fades: no transient
    sf.write(bad["no_snap_in_snap"], hum.astype(np.float32), 16000)
    return bad


def test_bad_files_are_warned_by_name_and_skipped(tmp_path, caplog):
    root = _copy_fixtures(tmp_path / "bad")
    bad = _bad_files(root)
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        man = scan_data(root)
        bank = load_clip_bank(man, root, 16000)
    text = caplog.text
    for what, path in bad.items():
        assert str(path) in text, f"{what}: no warning naming {path}"
    assert "unsupported file type" in text and "empty file" in text and "silent" in text
    assert "truncated" in text and "no clear snap" in text
    # the good clips are all there, the bad ones are not
    assert sum(len(bank.snaps[s]) for s in bank.snaps) == 20
    assert sum(len(bank.no_snaps[s]) for s in bank.no_snaps) == 20
    skipped = {Path(p).name for p, _ in bank.skipped}
    assert skipped == {p.name for k, p in bad.items() if k != "unsupported"}
    assert "snap/clip.mp3" not in set(man.path)
    statuses = dict(zip(man.path, man.status))
    assert statuses["snap/corrupt.wav"].startswith("skipped")


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*SNAPTRAIN, *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


@pytest.mark.parametrize("case", ["missing_folder", "missing_class", "empty_class", "all_bad"])
def test_unusable_data_folder_is_a_clear_error(tmp_path, case):
    root = tmp_path / "data"
    if case != "missing_folder":
        _copy_fixtures(root, backgrounds=False)
    if case == "missing_class":
        shutil.rmtree(root / "no_snap")
    elif case == "empty_class":
        for f in (root / "snap").iterdir():
            f.unlink()
    elif case == "all_bad":
        for f in (root / "no_snap").iterdir():
            f.unlink()
        sf.write(root / "no_snap" / "silent.wav", np.zeros(4000, np.float32), 16000)
    with pytest.raises(UsageError) as e:
        load_clip_bank(scan_data(root), root, 16000)
    msg = str(e.value)
    assert str(root) in msg
    assert {"missing_folder": "does not exist", "missing_class": "missing class folder 'no_snap/'",
            "empty_class": "no audio files in class 'snap'", "all_bad": "no usable clips in class 'no_snap'"}[case] in msg


def test_cli_errors_exit_nonzero_without_traceback(tmp_path):
    out = tmp_path / "run"
    r = _cli("train", "--data", str(tmp_path / "nowhere"), "--out", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "does not exist" in r.stderr and str(tmp_path / "nowhere") in r.stderr
    # a file that is not a snap model, given as the starting point
    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"definitely not torchscript")
    r = _cli("train", "--data", str(FIX), "--out", str(tmp_path / "run2"), "--init", str(fake))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert str(fake) in r.stderr and "not a TorchScript model file" in r.stderr
    # nothing is overwritten: an existing model file needs --overwrite
    existing = tmp_path / "keep.pt"
    existing.write_bytes(b"precious")
    r = _cli("train", "--data", str(FIX), "--out", str(tmp_path / "run3"), "--export", str(existing))
    assert r.returncode == 2 and "--overwrite" in r.stderr and existing.read_bytes() == b"precious"


def test_stream_windows_and_hard_negative_mining():
    from trainer.data import mine_hard_negatives, stream_windows

    x = np.random.default_rng(2).normal(0, 0.01, 16000).astype(np.float32)
    x[9000] = 0.9  # one click
    w = stream_windows(x, 4000, 320)
    assert w.shape == (1 + (16000 - 4000) // 320, 4000)
    assert np.array_equal(w[3], x[960:4960])
    assert stream_windows(x[:100], 4000, 320).shape == (0, 4000)

    def loudness(b):  # stands in for a model: "snap probability" = peak level
        return np.abs(b).max(axis=1)

    hard, info = mine_hard_negatives(loudness, [x, x[:3000]], 4000, 320, min_score=0.5, limit=5)
    assert info["windows_scored"] == len(w)
    # every window that holds the click, i.e. starts within 4000 samples before it
    assert info["above"] == sum(1 for k in range(len(w)) if k * 320 <= 9000 < k * 320 + 4000)
    assert len(hard) == 5 == info["kept"]
    assert all(h.shape == (4000,) and np.abs(h).max() == pytest.approx(0.9) for h in hard)


def test_sampler_draws_mined_windows_as_negatives(tmp_path):
    from trainer.data import MixConfig, WindowSampler, WindowSpec

    root = _copy_fixtures(tmp_path / "h")
    bank = load_clip_bank(scan_data(root), root, 16000)
    s = WindowSampler(bank, "train", WindowSpec(), MixConfig())
    marker = np.full(4000, 0.25, dtype=np.float32)
    s.set_hard_negatives([marker])
    rng = np.random.default_rng(0)
    drawn = [s.draw(rng) for _ in range(300)]
    hard = [(x, y) for x, y, k in drawn if k == "hard"]
    assert hard and all(y == 0 for _, y in hard)
    # the mined window itself, at a gain of -6..+3 dB
    assert all(np.allclose(x / x[0], 1.0) and 0.12 <= x[0] <= 0.36 for x, _ in hard)


def test_positive_strip_walks_the_snap_onset_through_the_positive_region(tmp_path):
    """Window j of a strip starts at j * hop and holds the snap's onset at onset_max - j * hop: the
    windows the detector scores for one snap, from the earliest that may fire to the last."""
    from snap_mqtt.onset import find_onset
    from trainer.data import MixConfig, WindowSampler, WindowSpec

    root = _copy_fixtures(tmp_path / "s")
    bank = load_clip_bank(scan_data(root), root, 16000)
    spec = WindowSpec()
    quiet = MixConfig(p_background_mix=0.0, p_second_snap=0.0, augment=False)
    s = WindowSampler(bank, "train", spec, quiet)
    s.no_snaps = [np.zeros(16000, dtype=np.float32)]  # silence under the snap: its onset is unambiguous
    rng = np.random.default_rng(3)
    for _ in range(5):
        strip, k = s.positive_strip(rng, 320)
        assert k == (spec.onset_max - spec.onset_min) // 320 + 1 == 7
        assert len(strip) == spec.window_samples + (k - 1) * 320
        found = find_onset(strip, 16000, start=0, stop=len(strip))
        assert found is not None
        onset = found.index
        assert abs(onset - spec.onset_max) <= 40  # within 2.5 ms of where it was put
        for j in range(k):  # every window has it inside the positive region
            assert spec.onset_min - 40 <= onset - j * 320 <= spec.onset_max + 40
