"""`snap-train tune`: the choice of a follow threshold (pure, on hand-made points) and the command on
validation scenes built from the committed fixtures, against `snap-train evaluate` on the same scenes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from snap_mqtt.audio_io import read_audio
from snap_mqtt.model_file import default_model_path, load_model
from tests.test_scenes_evaluate import FIX, _data_with_backgrounds
from trainer import cli
from trainer.tune import FollowPoint, choose_follow, choose_follow_guarded


def pt(follow, exact, f1=0.9, fg=2):
    return FollowPoint(follow, 0.9, 0.9, f1, exact, fg, fg)


def test_choose_follow_by_exact_gestures_then_the_higher_bar():
    off = pt(None, 0.70)
    assert choose_follow([off, pt(0.5, 0.80), pt(0.7, 0.75)]).follow == 0.5
    assert choose_follow([off, pt(0.5, 0.80, f1=0.93), pt(0.7, 0.80, f1=0.91)]).follow == 0.7
    assert choose_follow([off, pt(0.4, 0.80), pt(0.6, 0.80)]).follow == 0.6  # a tie: the safer bar


def test_choose_follow_treats_a_gain_under_one_percent_of_gestures_as_a_tie():
    # 0.3 counts two of 250 gestures more than 0.5: noise, and the lower bar lets speech join gestures
    off = pt(None, 0.742)
    pts = [off, pt(0.3, 0.794), pt(0.4, 0.790), pt(0.5, 0.786), pt(0.7, 0.770)]
    assert choose_follow(pts).follow == 0.5
    assert choose_follow(pts, tie=0.0).follow == 0.3
    assert choose_follow([off, pt(0.3, 0.80), pt(0.5, 0.785)]).follow == 0.3  # 1.5 points: a real gain


def test_choose_follow_never_adds_false_gestures_and_keeps_one_threshold_without_a_gain():
    off = pt(None, 0.70, fg=2)
    assert choose_follow([off, pt(0.3, 0.95, fg=3), pt(0.8, 0.72, fg=2)]).follow == 0.8
    # nor turns a false single into a false double (as many false gestures, one of them now a double)
    double = FollowPoint(0.3, 0.9, 0.9, 0.9, 0.95, 2, 3, false_multi=1)
    assert choose_follow([off, double, pt(0.8, 0.72, fg=2)]).follow == 0.8
    assert choose_follow([off, pt(0.3, 0.95, fg=3)]) is off
    assert choose_follow([off, pt(0.5, 0.70), pt(0.7, 0.65)]) is off  # no more exact counts: no second bar
    with pytest.raises(ValueError):
        choose_follow([pt(0.5, 0.8)])


def test_choose_follow_guarded_keeps_to_bars_that_cost_the_guard_scenes_no_f1():
    # the user's scenes favour 0.3, but on the shipped data's scenes 0.3 loses 2 points of F1 against
    # the base's 0.7: the lowest bar within 1 point there (0.5) is the best the user may have
    user = [pt(None, 0.70), pt(0.3, 0.90), pt(0.5, 0.85), pt(0.7, 0.80)]
    guard = [pt(None, 0.6, f1=0.85), pt(0.3, 0.7, f1=0.86), pt(0.5, 0.7, f1=0.875), pt(0.7, 0.7, f1=0.88)]
    assert choose_follow_guarded(user, guard, 0.7).follow == 0.5
    assert choose_follow_guarded(user, guard, 0.7, tie=0.03).follow == 0.3  # within a looser tie, the user's best
    # the reference is one threshold (the base had none): a candidate must not score under it there
    assert choose_follow_guarded(user, guard, None).follow == 0.3
    # nothing allowed beats one threshold on the user's scenes: one threshold
    assert choose_follow_guarded([pt(None, 0.9), pt(0.3, 0.95)], [pt(None, 0.7, f1=0.9), pt(0.3, 0.7, f1=0.8)],
                                 None).follow is None
    # nor one that makes a false double on the guard's negatives where the reference made none
    guard_d = [*guard[:2], FollowPoint(0.5, 0.9, 0.9, 0.875, 0.7, 1, 2, false_multi=1), guard[3]]
    assert choose_follow_guarded(user, guard_d, 0.7, tie=0.03).follow == 0.3
    assert choose_follow_guarded(user, [guard_d[0], guard_d[2], guard_d[3]], 0.7, tie=0.03).follow == 0.7
    with pytest.raises(ValueError, match="reference"):
        choose_follow_guarded(user, guard, 0.6)


def _long(name: str, seconds: float) -> np.ndarray:
    """A fixture background looped to `seconds`: real audio long enough to hold a validation stretch."""
    x = read_audio(FIX / "background" / name, 16000).samples
    return np.tile(x, int(np.ceil(seconds * 16000 / len(x))))[: int(seconds * 16000)]


@pytest.fixture(scope="module")
def val_scenes(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("tune")
    data = _data_with_backgrounds(tmp, {"music/loop.flac": _long("music.flac", 48.0),
                                        "speech/loop.flac": _long("speech.flac", 48.0),
                                        "household/loop.flac": _long("dishes.flac", 48.0)}, val_clips=True)
    out = tmp / "val"
    assert cli.main(["scenes", "--data", str(data), "--out", str(out), "--scenes", "3", "--seconds", "12",
                     "--clips", "val", "--background-split", "val", "--seed", "5"]) == 0
    return out


def test_tune_writes_the_chosen_follow_threshold_into_a_copy(val_scenes: Path, tmp_path: Path, capsys):
    base = default_model_path()
    before = base.read_bytes()
    out = tmp_path / "tuned.pt"
    assert cli.main(["tune", str(base), "--scenes", str(val_scenes), "--out", str(out),
                     "--candidates", "0.3,0.6"]) == 0
    printed = capsys.readouterr().out
    assert base.read_bytes() == before  # the model tuned is never changed
    old, new = load_model(base), load_model(out)
    tune = new.metadata.extra["tune"]
    points = [FollowPoint(**p) for p in tune["points"]]
    assert [p.follow for p in points] == [None, 0.3, 0.6]
    assert new.metadata.follow_threshold == choose_follow(points).follow
    assert new.metadata.threshold == old.metadata.threshold
    assert tune["follow_before"] == old.metadata.follow_threshold
    assert "<- kept" in printed and str(val_scenes) in printed
    # the weights are the base model's, bit for bit
    a, b = old.module.state_dict(), new.module.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # each point is what `snap-train evaluate` reports at that follow threshold on the same scenes
    for p in points[1:]:
        ev = tmp_path / f"ev-{p.follow}"
        assert cli.main(["evaluate", "--model", str(base), "--scenes", str(val_scenes), "--out", str(ev),
                         "--sweep", "0.5", "--baselines", "none", "--follow-threshold", str(p.follow)]) == 0
        ours = json.loads((ev / "evaluation.json").read_text())["detectors"]["ours"]
        assert ours["snaps"]["f1"] == pytest.approx(p.f1)
        assert ours["gestures"]["exact_count_share"] == pytest.approx(p.exact)
        assert ours["negatives"]["false_gestures"]["events"] == p.false_gestures
    # a tuned file is read back with its follow threshold by evaluate (and so by the listener)
    ev = tmp_path / "ev-tuned"
    assert cli.main(["evaluate", "--model", str(out), "--scenes", str(val_scenes), "--out", str(ev),
                     "--sweep", "0.5", "--baselines", "none"]) == 0
    assert json.loads((ev / "evaluation.json").read_text())["model"]["follow_threshold"] == new.metadata.follow_threshold


def test_tune_refuses_evaluation_scenes_existing_files_and_bad_candidates(val_scenes: Path, tmp_path: Path, capsys):
    base = str(default_model_path())
    held_out = tmp_path / "s"
    assert cli.main(["scenes", "--data", str(FIX), "--scenes", "1", "--seconds", "8", "--background-split", "all",
                     "--out", str(held_out)]) == 0
    capsys.readouterr()
    assert cli.main(["tune", base, "--scenes", str(held_out), "--out", str(tmp_path / "a.pt")]) == 2
    err = capsys.readouterr().err
    assert str(held_out / "scenes.json") in err and "clip_split 'test'" in err
    assert not (tmp_path / "a.pt").exists()
    taken = tmp_path / "taken.pt"
    taken.write_bytes(b"precious")
    assert cli.main(["tune", base, "--scenes", str(val_scenes), "--out", str(taken)]) == 2
    assert str(taken) in capsys.readouterr().err and taken.read_bytes() == b"precious"
    assert cli.main(["tune", base, "--scenes", str(val_scenes), "--out", str(tmp_path / "b.pt"),
                     "--candidates", "0.5,1.2"]) == 2
    assert "--candidates" in capsys.readouterr().err


def test_tune_threshold_sets_the_threshold_and_chooses_the_follow_threshold_at_it(val_scenes: Path, tmp_path: Path,
                                                                                  capsys):
    base = default_model_path()
    old = load_model(base)
    out = tmp_path / "raised.pt"
    assert cli.main(["tune", str(base), "--scenes", str(val_scenes), "--out", str(out),
                     "--candidates", "0.5,0.95", "--threshold", "0.9"]) == 0
    new = load_model(out)
    tune = new.metadata.extra["tune"]
    assert new.metadata.threshold == pytest.approx(0.9)
    assert tune["threshold_before"] == old.metadata.threshold and tune["follow_before"] == old.metadata.follow_threshold
    points = [FollowPoint(**p) for p in tune["points"]]
    assert [p.follow for p in points] == [None, 0.5]  # a candidate at or above the threshold is no follow
    assert "at its threshold 0.900" in capsys.readouterr().out
    ev = tmp_path / "ev"
    assert cli.main(["evaluate", "--model", str(base), "--scenes", str(val_scenes), "--out", str(ev), "--sweep", "0.5",
                     "--baselines", "none", "--threshold", "0.9", "--follow-threshold", "0.5"]) == 0
    ours = json.loads((ev / "evaluation.json").read_text())["detectors"]["ours"]
    assert ours["snaps"]["f1"] == pytest.approx(points[1].f1)
    assert ours["gestures"]["exact_count_share"] == pytest.approx(points[1].exact)
    for bad in ("0", "1.5"):
        assert cli.main(["tune", str(base), "--scenes", str(val_scenes), "--out", str(tmp_path / "x.pt"),
                         "--threshold", bad]) == 2
        assert "--threshold" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
