"""Hours of real music to play to a model (trainer.music): the licence split between training and
evaluation packages, the music tracks, and the `snap-train music` set read by `snap-train evaluate`.

The packages are laid out in a temporary root the way Debian installs them (`--root`, as after
`dpkg-deb -x`), holding the committed music fixture (real music, 8 s) under several names."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from snap_mqtt.audio_io import AudioFileError, read_audio
from snap_mqtt.onset import find_onset
from trainer import cli
from trainer.drumkits import EVAL_ROOM_SEEDS, rooms
from trainer.data import ClipBank, add_music_packages
from trainer.music import LEVEL_DBFS, PACKAGES, installed, music_track, training_licences, training_tracks

FIX = Path(__file__).resolve().parent / "fixtures" / "audio"
MUSIC = FIX / "background" / "music.flac"
SR = 16000


def _package(root: Path, name: str, files: dict[str, Path | bytes]) -> Path:
    folder = root / next(p for p in PACKAGES if p.name == name).folder.relative_to("/")
    for rel, src in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, Path):
            shutil.copy(src, folder / rel)
        else:
            (folder / rel).write_bytes(src)
    return folder


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("music-root")
    _package(r, "planetblupi-music-ogg", {"music000.flac": MUSIC})  # training
    _package(r, "warzone2100-music", {"albums/a/track1.flac": MUSIC, "albums/b/track2.flac": MUSIC,
                                      "readme.txt": b"not audio"})  # evaluation, in sub-folders
    _package(r, "singularity-music", {"Nebula.flac": MUSIC, "win/broken.ogg": b"OggS but not really"})
    return r


def test_licences_decide_the_split_and_only_installed_packages_count(root: Path):
    assert {p.split for p in PACKAGES} == {"train", "eval"}
    # only GPL-2.0-or-later / GPL-3.0-or-later music may be trained on; everything else is played only
    assert all(p.licence.endswith("-or-later") for p in PACKAGES if p.split == "train")
    assert not any("CC-BY-SA" in p.licence for p in PACKAGES if p.split == "train")
    train, evaluation = installed("train", root), installed("eval", root)
    assert list(train) == ["planetblupi-music-ogg"]
    assert sorted(evaluation) == ["singularity-music", "warzone2100-music"]
    assert [f.name for f in evaluation["warzone2100-music"]] == ["track1.flac", "track2.flac"]  # audio only
    assert installed("eval", root / "nowhere") == {}


def test_music_track_is_room_music_at_a_radio_level_from_readable_tracks(root: Path, caplog):
    files = installed("eval", root)["singularity-music"]  # one good track, one broken file
    rng = np.random.default_rng(3)
    with caplog.at_level(logging.WARNING):
        x, sources = music_track(files, 40.0, SR, rooms(EVAL_ROOM_SEEDS[:2], SR), rng)
    assert x.dtype == np.float32 and len(x) == 40 * SR
    assert np.abs(x).max() <= 0.95 + 1e-6
    assert "broken.ogg" in caplog.text  # skipped, named
    assert {Path(s["file"]).name for s in sources} == {"Nebula.flac"}
    assert sum(s["seconds"] for s in sources) >= 40 - 0.1 * len(sources)
    # each excerpt is the music heard in a room, at a radio's level (RMS within the stated range)
    start = 0
    for s in sources[:-1]:
        n = int(s["seconds"] * SR)
        seg = x[start + SR // 10: start + n - SR // 10]
        level = 20 * np.log10(np.sqrt(np.mean(seg.astype(np.float64) ** 2)))
        assert LEVEL_DBFS[0] - 3 <= level <= LEVEL_DBFS[1] + 3, level
        start += n - int(0.02 * SR)
    # the room changed the music: not a scaled copy of the file
    dry = read_audio(MUSIC, SR).samples
    c = np.corrcoef(x[SR: 5 * SR], dry[SR: 5 * SR])[0, 1] if len(dry) >= 5 * SR else 0.0
    assert abs(c) < 0.99


def test_music_track_with_no_readable_file_is_a_clear_error(tmp_path: Path):
    bad = tmp_path / "pkg" / "x.ogg"
    bad.parent.mkdir()
    bad.write_bytes(b"nothing")
    jingle = tmp_path / "pkg" / "jingle.flac"  # readable, but half a second: no music to play
    sf.write(str(jingle), np.zeros(SR // 2, dtype=np.float32) + 0.1, SR)
    with pytest.raises(AudioFileError, match="pkg"):
        music_track([bad, jingle], 10.0, SR, rooms(EVAL_ROOM_SEEDS[:1], SR), np.random.default_rng(0))


def test_music_cli_builds_a_set_that_evaluate_reads(root: Path, tmp_path: Path):
    out = tmp_path / "music"
    args = ["music", "--data", str(FIX), "--out", str(out), "--root", str(root), "--seconds", "30", "--scenes", "2"]
    assert cli.main(args) == 0
    index = json.loads((out / "scenes.json").read_text())
    # evaluation packages only: the training package's music is never played here
    assert [n["kind"] for n in index["negatives"]] == ["music: warzone2100-music", "music: singularity-music"]
    assert set(index["music"]["packages"]) == {"warzone2100-music", "singularity-music"}
    for n in index["negatives"]:
        assert read_audio(out / n["file"]).samples.shape[0] == pytest.approx(30 * SR, abs=2)
        assert all("planetblupi" not in s["file"] for s in n["sources"])
    assert [s["kind"] for s in index["scenes"]] == ["music: singularity-music", "music: warzone2100-music"]
    errors = []
    for s in index["scenes"]:
        a = read_audio(out / s["file"]).samples
        assert sum(g["count"] for g in s["gestures"]) == len(s["snaps"]) > 0
        for p in s["snaps"]:  # our snap is where the truth says, at the stated local SNR range
            pos, lo = int(round(p["time"] * SR)), int(round(p["time"] * SR)) - int(0.08 * SR)
            o = find_onset(a[lo:pos + int(0.06 * SR)], SR, start=pos - int(0.03 * SR) - lo)
            if o is not None:
                errors.append(abs(lo + o.index - pos) / SR)
            assert p["snr_db"] <= 30 + 0.01
    assert len(errors) >= 0.8 * sum(len(s["snaps"]) for s in index["scenes"])
    assert np.median(errors) < 0.005, errors
    assert cli.main(args) == 2  # nothing is overwritten
    ev = tmp_path / "ev"
    assert cli.main(["evaluate", "--scenes", str(out), "--baselines", "none", "--out", str(ev), "--sweep", "0.5"]) == 0
    res = json.loads((ev / "evaluation.json").read_text())["detectors"]["ours"]
    assert res["negatives"]["hours"] == pytest.approx(60 / 3600)
    assert res["by_kind"]["music: warzone2100-music"]["negatives"]["hours"] == pytest.approx(30 / 3600)
    snaps = res["by_kind"]["music: singularity-music"]["snaps"]
    assert snaps["tp"] + snaps["fn"] == len(index["scenes"][0]["snaps"])


def test_music_cli_without_the_packages_names_them(tmp_path: Path, capsys):
    rc = cli.main(["music", "--data", str(FIX), "--out", str(tmp_path / "o"), "--root", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "warzone2100-music" in err and "apt-get install" in err
    assert not (tmp_path / "o" / "scenes.json").exists()


def test_training_tracks_use_the_training_packages_only_and_join_the_training_music(root: Path):
    tracks = training_tracks(SR, 60, root, seed=4, track_seconds=30)
    assert len(tracks) == 2 and all(len(t) == 30 * SR and t.dtype == np.float32 for t in tracks)
    again = training_tracks(SR, 60, root, seed=4, track_seconds=30)
    assert all(np.array_equal(a, b) for a, b in zip(tracks, again))  # seeded
    assert training_licences(root) == {"planetblupi-music-ogg": "GPL-3.0-or-later"}  # into the model's metadata
    bank = ClipBank(sample_rate=SR)
    assert add_music_packages(bank, 60, root) == 60
    assert bank.background_kinds["train"] == ["music"] and not bank.backgrounds["val"]
    assert add_music_packages(bank, 0, root) == 0
    with pytest.raises(FileNotFoundError, match="planetblupi-music-ogg"):
        training_tracks(SR, 30, root / "nowhere")


def test_train_and_polish_reject_bad_music_seconds_and_missing_music(tmp_path: Path, capsys):
    assert cli.main(["polish", "m.pt", "--out", "x.pt", "--music-packages", "-1"]) == 2
    assert "--music-packages" in capsys.readouterr().err
    rc = cli.main(["train", "--data", str(FIX), "--out", str(tmp_path / "m.pt"), "--music-packages", "30",
                   "--music-root", str(tmp_path), "--lookalike-kits", "0", "--synthetic-drums", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "--music-packages" in err and "apt-get install" in err
    assert not (tmp_path / "m.pt").exists()  # checked before anything is loaded or written


def test_music_cli_plays_only_the_packages_asked_for(root: Path, tmp_path: Path, capsys):
    out = tmp_path / "one"
    assert cli.main(["music", "--data", str(FIX), "--out", str(out), "--root", str(root), "--seconds", "12",
                     "--scenes", "1", "--packages", "singularity-music"]) == 0
    index = json.loads((out / "scenes.json").read_text())
    assert [n["kind"] for n in index["negatives"]] == ["music: singularity-music"]
    assert [s["kind"] for s in index["scenes"]] == ["music: singularity-music"]
    # a training package (or a typo) is refused by name, before anything is written
    rc = cli.main(["music", "--data", str(FIX), "--out", str(tmp_path / "two"), "--root", str(root),
                   "--packages", "planetblupi-music-ogg"])
    assert rc == 2 and "planetblupi-music-ogg" in capsys.readouterr().err
    assert not (tmp_path / "two").exists()
