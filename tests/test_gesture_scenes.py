"""Gesture scenes from a user's held-back snaps (trainer.gesture_scenes), on the committed fixture clips,
and when enrollment keeps the base's follow threshold instead of choosing one on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from snap_mqtt.audio_io import read_audio
from snap_mqtt.onset import snap_onset
from trainer import enroll as en
from trainer import finetune as ft
from trainer import gesture_scenes as us
from trainer import user_clips as uc
from trainer.data import SnapClip

FIX = Path(__file__).resolve().parent / "fixtures" / "audio"
RATE = 16000


def _snaps(n: int = 6) -> list[SnapClip]:
    out = []
    for p in sorted((FIX / "snap").glob("*.flac"))[:n]:
        x = read_audio(p, RATE).samples
        out.append(SnapClip(p.name, x, int(snap_onset(x, RATE))))
    return out


def test_scenes_hold_gestures_of_one_to_three_snaps_where_the_truth_says():
    snaps = _snaps()
    # a digitally silent room: whatever is in the mix is a placed snap
    recs, audio = us.build(snaps, [np.zeros(3 * RATE, np.float32)], RATE, n_scenes=3, seed=5)
    assert len(recs) == 3 and set(audio) == {0, 1, 2}
    for i, r in enumerate(recs):
        x = audio[i]
        assert r.role == "scene" and r.sample_rate == RATE and len(x) == int(us.SCENE_SECONDS * RATE)
        assert len(r.snaps) == len(r.snrs) == sum(g.count for g in r.gestures) >= 4
        assert all(1 <= g.count <= 3 for g in r.gestures)
        t = np.array(r.snaps)
        gaps = np.diff(t)
        # snaps of one gesture 0.25-0.5 s apart, gestures at least 3 s apart, all inside the scene
        assert np.all((gaps >= 0.25 - 1e-6) & (gaps <= 0.5 + 1e-6) | (gaps >= 3.0))
        assert t[0] >= 1.0 and t[-1] <= us.SCENE_SECONDS - 1.5
        near = np.zeros(len(x), bool)
        for s in t:
            a = int(round(s * RATE))
            seg = x[a:a + int(0.05 * RATE)]
            assert np.max(np.abs(seg)) > 0  # the snap is there, right after its true onset
            assert not np.any(x[a - int(0.035 * RATE):a - int(0.031 * RATE)])  # and nothing just before its cut
            near[a - int(us.LEAD_S * RATE):a + int(us.SNAP_S * RATE) + 1] = True
        assert not np.any(x[~near])  # nothing anywhere else


def test_scenes_are_deterministic_per_seed():
    snaps, room = _snaps(), [read_audio(FIX / "background" / "speech.flac", RATE).samples]
    r1, a1 = us.build(snaps, room, RATE, n_scenes=2, seed=1)
    r2, a2 = us.build(snaps, room, RATE, n_scenes=2, seed=1)
    r3, a3 = us.build(snaps, room, RATE, n_scenes=2, seed=2)
    assert [r.snaps for r in r1] == [r.snaps for r in r2] and all(np.array_equal(a1[i], a2[i]) for i in a1)
    assert [r.snaps for r in r1] != [r.snaps for r in r3]
    # recordings without a snap go after the scenes, as negatives (false gestures are counted there)
    r4, a4 = us.build(snaps, room, RATE, n_scenes=2, seed=1, kind="x", negatives=[room[0], np.zeros(0)])
    assert [r.role for r in r4] == ["scene", "scene", "negative"] and r4[2].kind == "x" and not r4[2].snaps
    assert np.array_equal(a4[2], room[0]) and r4[2].seconds == len(room[0]) / RATE


def test_a_short_room_is_looped_without_a_click():
    t = np.arange(int(0.53 * RATE)) / RATE
    room = (0.5 * np.sin(2 * np.pi * 441.3 * t)).astype(np.float32)  # a hard loop would jump
    bed = us.room_bed(us.room_audio([room], RATE), 2 * RATE, np.random.default_rng(0), RATE)
    assert len(bed) == 2 * RATE
    step = np.max(np.abs(np.diff(room)))
    # an equal-power crossfade may swell by up to sqrt(2); the hard loop jumps by over 4x
    assert np.max(np.abs(np.diff(np.resize(room, 2 * RATE)))) > 4 * step
    assert np.max(np.abs(np.diff(bed))) <= 1.45 * step
    with pytest.raises(ValueError, match="no room audio"):
        us.room_audio([np.zeros(0, np.float32)], RATE)


def _user(held: int) -> uc.UserClips:
    snaps = _snaps(6)
    return uc.UserClips(snaps_train=snaps[held:], snaps_held=snaps[:held], room_train=[np.zeros(RATE, np.float32)],
                        room_held=[], room_names=["room.flac"])


def test_enrollment_keeps_the_base_follow_threshold_with_too_few_held_back_snaps_or_tuning_off():
    # neither case runs a model (None would fail if it did)
    few = en.choose_follow_on_gesture_scenes(None, 0.94, 0.7, _user(en.FOLLOW_MIN_SNAPS - 1), ft.TuneConfig())
    assert few["kept"] == 0.7 and few["tuned"] is False and "fewer than" in few["reason"]
    off = en.choose_follow_on_gesture_scenes(None, 0.94, 0.7, _user(5), ft.TuneConfig(tune_follow=False))
    assert off["kept"] == 0.7 and off["tuned"] is False and "off" in off["reason"]


def test_enrollment_chooses_the_follow_threshold_on_the_users_scenes_within_the_shipped_guard():
    from snap_mqtt.model_file import default_model_path, load_model
    from trainer.tune import FollowPoint, choose_follow_guarded

    model = load_model(default_model_path())
    th = model.metadata.threshold
    user = _user(5)
    user.room_train = [read_audio(FIX / "background" / "dishes.flac", RATE).samples]
    shipped = (_snaps(8)[5:], [read_audio(FIX / "background" / "speech.flac", RATE).samples])
    r = en.choose_follow_on_gesture_scenes(model, th, 0.7, user, ft.TuneConfig(follow_scenes=2), shipped=shipped)
    assert r["scenes"] == r["shipped_val"]["scenes"] == 2 and r["gestures"] >= 8
    points = [FollowPoint(**p) for p in r["points"]]
    guard = [FollowPoint(**p) for p in r["shipped_val"]["points"]]
    assert [p.follow for p in points] == [p.follow for p in guard] == [None, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    best = choose_follow_guarded(points, guard, 0.7)
    assert r["tuned"] is (best.follow is not None)
    assert r["kept"] == (best.follow if best.follow is not None else 0.7)
    # the base's value when it is not below the enrolled threshold: the reference is then one threshold
    hi = en.choose_follow_on_gesture_scenes(model, 0.65, 0.7, user, ft.TuneConfig(follow_scenes=2), shipped=shipped)
    assert [p["follow"] for p in hi["points"]] == [None, 0.3, 0.4, 0.5, 0.6]
    assert hi["kept"] is None or hi["kept"] < 0.65
