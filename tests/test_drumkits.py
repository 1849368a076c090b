"""Recorded look-alikes from Hydrogen drum kits (trainer.drumkits): kit parsing, the licence split
between training and evaluation, the `snap-train lookalikes` set and the training tracks.

The kits here are built in a temporary folder the way Debian's hydrogen-drumkits lays them out
(a folder per kit, a namespaced drumkit.xml, sample files): real files, parsed for real. The samples
are a committed snap fixture (as the kit's "finger snaps"), a synthetic clap and a stick click."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from snap_mqtt.audio_io import read_audio
from snap_mqtt.onset import find_onset
from trainer import cli
from trainer.data import ClipBank, add_lookalike_kits
from trainer.drumkits import (KIT_LICENCES, LOOKALIKE_KINDS, build_lookalike_set, kind_of, load_hits,
                              lookalike_track, rooms, training_kit_licences, training_tracks)
from trainer.simroom import clap

FIX = Path(__file__).resolve().parent / "fixtures" / "audio"
SR = 16000


def _xml(name: str, instruments: dict[str, list[str]]) -> str:
    body = "".join(
        f"<instrument><id>{i}</id><name>{inst}</name>"
        + "".join(f"<layer><filename>{f}</filename><min>0</min><max>1</max></layer>" for f in files)
        + "</instrument>"
        for i, (inst, files) in enumerate(instruments.items()))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<drumkit_info xmlns="http://www.hydrogen-music.org/drumkit">'
            f"<name>{name}</name><license>GPL</license><instrumentList>{body}</instrumentList></drumkit_info>")


def _click(rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.08 * 44100)) / 44100
    return (np.sin(2 * np.pi * 1800 * t) * np.exp(-t / 0.006) + rng.standard_normal(len(t)) * np.exp(-t / 0.001)) * 0.5


@pytest.fixture(scope="module")
def kits(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("drumkits")
    rng = np.random.default_rng(0)
    snap = sf.read(str(sorted((FIX / "snap").glob("*.flac"))[0]))[0]

    def kit(name: str, samples: dict[str, np.ndarray], instruments: dict[str, list[str]]) -> None:
        d = root / name
        d.mkdir()
        for fn, x in samples.items():
            sf.write(str(d / fn), np.asarray(x, dtype=np.float32), 44100)
        (d / "drumkit.xml").write_text(_xml(name, instruments))

    c = clap(44100, rng) * 0.5
    # an evaluation kit (GPL-2.0-only): snaps, claps (two layers of one sample, one missing), a kick
    kit("Gimme A Hand 1.0", {"Snap.wav": snap, "Clap.wav": c, "Kick.wav": _click(rng) * 0.2},
        {"Finger Snaps": ["Snap.wav"], "Hand Clap": ["Clap.wav", "Clap.wav", "Gone.wav"], "Kick": ["Kick.wav"]})
    # a training kit (CC0): a clap, a stick, a silent sample
    kit("Audiophob", {"c.wav": clap(44100, rng) * 0.5, "s.wav": _click(rng), "z.wav": np.zeros(4000)},
        {"Hand Clap": ["c.wav"], "Stick": ["s.wav"], "Snare Jazz": ["z.wav"]})
    # a kit nobody listed: evaluation only
    kit("Homemade", {"k.wav": _click(rng)}, {"Woodblock": ["k.wav"]})
    return root


def test_instrument_names_map_to_kinds():
    assert kind_of("Hand Clap") == "clap" and kind_of("Amp_Clap_1.flac") == "clap"
    assert kind_of("Finger Snaps") == "snap"  # a positive, never a look-alike
    assert kind_of("Pearl Side Stick") == "click" and kind_of("Rim Click (Pearl)") == "click"
    assert kind_of("Clave") == "knock" and kind_of("Cajon Slap") == "knock" and kind_of("Djembe1 Slap") == "knock"
    assert kind_of("WaterglassHi") == "clink" and kind_of("Cowbell") == "clink"
    assert kind_of("Snare Rock") == "snare"
    assert kind_of("Kick") is None and kind_of("Closed HH") is None and kind_of("Crash") is None
    assert "snap" not in LOOKALIKE_KINDS


def test_licence_decides_the_split_and_unknown_kits_are_evaluation_only(kits: Path):
    train = load_hits(kits, "train", SR)
    evaluation = load_hits(kits, "eval", SR, kinds=LOOKALIKE_KINDS + ("snap",))
    assert {h.kit for h in train} == {"Audiophob"}
    assert {(h.instrument, h.kind) for h in train} == {("Hand Clap", "clap"), ("Stick", "click")}  # silent snare out
    assert {h.kit for h in evaluation} == {"Gimme A Hand 1.0", "Homemade"}
    # one clap sample although two layers name it; the missing file skipped; the kick not a look-alike
    assert sorted(h.kind for h in evaluation) == ["clap", "knock", "snap"]
    assert all(h.audio.dtype == np.float32 and np.abs(h.audio).max() == pytest.approx(1.0) for h in evaluation)
    assert all(KIT_LICENCES[k][1] == "train" for k in {h.kit for h in train})
    assert training_kit_licences(kits) == {"Audiophob": "CC0-1.0"}  # recorded in a trained model's metadata
    assert not any(h.kind == "snap" for h in load_hits(kits, "eval", SR))  # snaps only when asked for


def test_missing_kits_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="hydrogen-drumkits"):
        load_hits(tmp_path / "nope", "eval", SR)


def test_lookalike_track_places_series_of_hits_at_their_times(kits: Path):
    hits = load_hits(kits, "eval", SR)
    bed = (np.random.default_rng(1).standard_normal(20 * SR) * 1e-3).astype(np.float32)
    x, events = lookalike_track(hits, bed, SR, rooms((11,), SR), np.random.default_rng(2))
    assert len(x) == len(bed) and np.abs(x).max() <= 0.95 + 1e-6
    assert len(events) >= 5
    times = [e["time"] for e in events]
    assert times == sorted(times) and times[-1] < 20 - 0.3
    assert {e["kind"] for e in events} <= {"clap", "knock"}
    added = x - bed
    for t in times:  # each hit is there: louder than the bed, its onset within 10 ms of its stated time
        span = slice(int((t - 0.05) * SR), int((t + 0.05) * SR))
        o = find_onset(x[span], SR)
        assert o is not None and abs(o.index / SR - 0.05) < 0.01, t
        assert np.sqrt(np.mean(added[span] ** 2)) > np.sqrt(np.mean(bed[span] ** 2)), t
        assert np.abs(added[int((t - 0.05) * SR): int((t - 0.01) * SR)]).max() < 0.2 * np.abs(added[span]).max()


@pytest.fixture(scope="module")
def keyboard(tmp_path_factory) -> Path:
    """Two keys down and up, a third without its release (skipped), as bucklespring-data names them."""
    root = tmp_path_factory.mktemp("buckle")
    rng = np.random.default_rng(5)
    for name in ("01-0", "01-1", "1c-0", "1c-1", "39-0"):
        sf.write(str(root / f"{name}.wav"), (_click(rng) * 0.4).astype(np.float32), 44100)
    (root / "README").write_text("not a key")
    return root


def test_lookalikes_cli_builds_an_evaluation_set_that_evaluate_reads(kits: Path, keyboard: Path, tmp_path: Path):
    out = tmp_path / "look"
    args = ["lookalikes", "--data", str(FIX), "--out", str(out), "--kits", str(kits), "--seconds", "20",
            "--scenes", "2", "--background-split", "all", "--keyboard", str(keyboard)]
    assert cli.main(args) == 0
    index = json.loads((out / "scenes.json").read_text())
    kinds = [n["kind"] for n in index["negatives"]]
    assert kinds == ["bed", "claps", "knocks", "typing"]
    assert index["negatives"][0]["hits"] == 0 and all(n["hits"] > 0 for n in index["negatives"][1:])
    assert index["lookalikes"]["keyboard"]["keys"] == 2
    for n in index["negatives"]:
        assert read_audio(out / n["file"]).samples.shape[0] == pytest.approx(20 * SR, abs=2)
        assert all(e.get("kit", "Gimme A Hand 1.0") in ("Gimme A Hand 1.0", "Homemade")
                   for e in n["events"])  # evaluation kits only
    assert len(index["scenes"]) == 2
    errors = []
    for s in index["scenes"]:
        a = read_audio(out / s["file"]).samples
        assert sum(g["count"] for g in s["gestures"]) == len(s["snaps"]) > 0
        for p in s["snaps"]:  # the other hand's snap is where the truth says
            pos, lo = int(round(p["time"] * SR)), int(round(p["time"] * SR)) - int(0.08 * SR)
            o = find_onset(a[lo:pos + int(0.06 * SR)], SR, start=pos - int(0.03 * SR) - lo)
            assert o is not None, p
            errors.append(abs(lo + o.index - pos) / SR)
            assert 3 - 2.1 <= p["snr_db"] <= 30 + 0.01
    # found again in the mix where the truth puts it (a hand's rustle can lead a snap by a few ms)
    assert max(errors) < 0.03 and np.median(errors) < 0.005, errors
    # nothing is overwritten
    assert cli.main(args) == 2
    # and the standard evaluation reads it, reporting each kind of look-alike on its own
    ev = tmp_path / "ev"
    assert cli.main(["evaluate", "--scenes", str(out), "--baselines", "none", "--out", str(ev), "--sweep", "0.5"]) == 0
    res = json.loads((ev / "evaluation.json").read_text())["detectors"]["ours"]
    assert set(res["by_kind"]) == {"bed", "claps", "knocks", "typing", "other hand"}
    assert res["by_kind"]["claps"]["negatives"]["hours"] == pytest.approx(20 / 3600)
    snaps = res["by_kind"]["other hand"]["snaps"]
    assert snaps["tp"] + snaps["fn"] == sum(len(s["snaps"]) for s in index["scenes"])


def test_lookalikes_without_the_keyboard_warn_and_leave_the_rest_as_it_was(kits: Path, keyboard: Path,
                                                                           tmp_path: Path, caplog):
    common = dict(seed=3, seconds_per_kind=12.0, n_scenes=1, background_split="all")
    with_keys = build_lookalike_set(FIX, tmp_path / "a", kits, keyboard=keyboard, **common)
    with caplog.at_level("WARNING"):
        without = build_lookalike_set(FIX, tmp_path / "b", kits, keyboard=tmp_path / "no-keyboard", **common)
    assert "typing not measured" in caplog.text and str(tmp_path / "no-keyboard") in caplog.text
    assert [n["kind"] for n in without["negatives"]] == ["bed", "claps", "knocks"]
    assert without["lookalikes"]["keyboard"] is None
    # the typing is drawn last: every other recording is the same, sample for sample
    for n in without["negatives"] + without["scenes"]:
        a = read_audio(tmp_path / "a" / n["file"]).samples
        b = read_audio(tmp_path / "b" / n["file"]).samples
        assert np.array_equal(a, b), n["file"]
    assert [n["kind"] for n in with_keys["negatives"]][-1] == "typing"


def test_lookalikes_cli_names_a_missing_kits_folder(tmp_path: Path, capsys):
    rc = cli.main(["lookalikes", "--data", str(FIX), "--out", str(tmp_path / "o"), "--kits", str(tmp_path / "none")])
    assert rc == 2 and str(tmp_path / "none") in capsys.readouterr().err


def test_training_tracks_use_training_kits_only_and_join_the_training_backgrounds(kits: Path):
    beds = [read_audio(p, SR).samples for p in sorted((FIX / "background").glob("*.flac"))]
    tracks = training_tracks(SR, 60, beds, kits, seed=5)
    assert len(tracks) == 2 and all(len(t) == 30 * SR and t.dtype == np.float32 for t in tracks)
    again = training_tracks(SR, 60, beds, kits, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(tracks, again))  # seeded
    bank = ClipBank(sample_rate=SR)
    bank.backgrounds["train"] = list(beds)
    bank.background_kinds["train"] = ["household"] * len(beds)
    assert add_lookalike_kits(bank, 30, kits) == 30
    assert bank.background_kinds["train"][-1] == "lookalikes" and not bank.backgrounds["val"]
    assert add_lookalike_kits(bank, 0, kits) == 0


def test_training_tracks_without_a_training_kit_fail_clearly(tmp_path: Path):
    (tmp_path / "Gimme A Hand 1.0").mkdir()
    (tmp_path / "Gimme A Hand 1.0" / "drumkit.xml").write_text(_xml("Gimme A Hand 1.0", {}))
    with pytest.raises(FileNotFoundError, match="no training kit"):
        training_tracks(SR, 30, [np.zeros(SR * 2, dtype=np.float32)], tmp_path)


def test_train_rejects_bad_lookalike_seconds(capsys):
    assert cli.main(["polish", "m.pt", "--out", "x.pt", "--lookalike-kits", "-5"]) == 2
    assert "--lookalike-kits" in capsys.readouterr().err
