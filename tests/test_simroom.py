"""The simulated person's evaluation scenes (trainer.simroom.make_scene) on the fixture snaps: each
snap's recorded peak level is the level the scene file holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from snap_mqtt.audio_io import read_audio
from trainer import simroom as sr

FIX = Path(__file__).resolve().parent / "fixtures" / "audio"


@pytest.fixture(scope="module")
def person():
    sim = sr.SimRoom(sr.draw_person(5))
    srcs = [read_audio(p, sr.SRC_RATE).samples for p in sorted((FIX / "snap").glob("*.flac"))]
    return sim, srcs


def test_scene_snaps_carry_their_peak_as_the_file_holds_it(person):
    sim, srcs = person
    rate = sim.rate
    rng = np.random.default_rng(0)
    quiet_room = np.zeros(12 * rate, dtype=np.float32)  # the snaps alone, over the mic's noise floor
    x, snaps, gestures = sr.make_scene(sim, quiet_room, srcs, rng)
    assert snaps and sum(g["count"] for g in gestures) == len(snaps)
    firsts = {g["snaps"][0] for g in gestures}
    for s in snaps:
        at = int(round(s["time"] * rate))
        heard = 20 * np.log10(np.max(np.abs(x[at: at + rate // 20])))
        # a gesture's first snap is alone over the mic's noise floor (the last gesture is 3 s or more
        # behind); a later one sits on the reverberant tail of the snap 0.25-0.5 s before it
        assert s["peak_dbfs"] == pytest.approx(heard, abs=0.5 if s["time"] in firsts else 3.0)


def test_a_scene_turned_down_to_fit_reports_the_turned_down_peaks(person):
    sim, srcs = person
    rate = sim.rate
    rng = np.random.default_rng(1)
    loud_room = (np.random.default_rng(2).standard_normal(12 * rate) * 0.3).astype(np.float32)
    x, snaps, _ = sr.make_scene(sim, loud_room, srcs, rng)
    assert float(np.max(np.abs(x))) <= 0.95 + 1e-6  # a snap 3-30 dB over this room would clip unscaled
    assert snaps and max(s["peak_dbfs"] for s in snaps) <= 20 * np.log10(0.95) + 0.01
