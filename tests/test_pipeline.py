"""SnapPipeline (downmix + streaming resample + detect + count) and the streaming resampler."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import resample_poly
from synth_audio import RATE, SPEC, TableScorer, click, ideal_scorer, scene

from snap_mqtt.events import GestureEvent, SnapEvent
from snap_mqtt.model_file import default_model_path, load_model
from snap_mqtt.pipeline import DetectionParams, SnapPipeline
from snap_mqtt.resample import StreamingResampler
from snap_mqtt.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parent.parent


# -- the streaming resampler ------------------------------------------------------------------------

@pytest.mark.parametrize("rate_in", [44100, 48000, 22050, 8000, 32000])
def test_resampler_matches_resample_poly(rate_in):
    x = np.random.default_rng(0).standard_normal(rate_in // 2).astype(np.float32)
    r = StreamingResampler(rate_in, RATE)
    y = np.concatenate([r.process(x[:1000]), r.process(x[1000:]), r.flush()])
    ref = resample_poly(x.astype(np.float64), r.up, r.down)
    assert len(y) == len(ref)
    assert np.max(np.abs(y - ref)) < 1e-5


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 5000), min_size=1, max_size=20), st.sampled_from([44100, 48000, 11025]))
def test_resampler_output_does_not_depend_on_chunking(sizes, rate_in):
    x = np.random.default_rng(1).standard_normal(rate_in // 4).astype(np.float32)
    whole = StreamingResampler(rate_in, RATE)
    ref = np.concatenate([whole.process(x), whole.flush()])
    r = StreamingResampler(rate_in, RATE)
    out, i, k = [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        out.append(r.process(x[i: i + n]))
        i, k = i + n, k + 1
    out.append(r.flush())
    assert np.array_equal(np.concatenate(out), ref)


def test_resampler_outputs_as_soon_as_its_filter_is_fed():
    r = StreamingResampler(48000, RATE)
    total = sum(len(r.process(np.zeros(480, dtype=np.float32))) for _ in range(100))  # one second
    assert RATE - r.latency * RATE - 2 <= total <= RATE
    assert 0 < r.latency < 0.005
    same = StreamingResampler(RATE, RATE)
    x = np.arange(5, dtype=np.float32)
    assert same.identity and np.array_equal(same.process(x), x) and same.latency == 0


# -- the pipeline on synthetic scenes ------------------------------------------------------------------

ONSETS = [0.6, 2.0, 2.3, 4.0, 4.25, 4.5, 4.8]  # single, double, triple, then a single


def device_scene(rate: int, channels: int, onsets=ONSETS, seconds: float = 6.0) -> np.ndarray:
    """The scene as a device would deliver it: its own rate, several channels."""
    rng = np.random.default_rng(5)
    x = (1e-3 * rng.standard_normal(int(seconds * rate))).astype(np.float32)
    for i, t in enumerate(onsets):
        c = click(rate, seed=100 + i)
        a = int(round(t * rate))
        x[a: a + len(c)] += c
    return np.stack([x * (1 - 0.2 * ch) for ch in range(channels)], axis=1) if channels > 1 else x


def make(rate: int = RATE, channels: int = 1, params=None) -> SnapPipeline:
    return SnapPipeline(ideal_scorer(), params, input_rate=rate, channels=channels, spec=SPEC)


def run(p: SnapPipeline, x: np.ndarray, block: int) -> list[tuple[float, list]]:
    """(input seconds consumed, events returned) per process() call, then flush()."""
    out = []
    for i in range(0, len(x), block):
        ev = p.process(x[i: i + block])
        out.append((p.now, ev))
    out.append((p.now, p.flush()))
    return out


def events(calls) -> list:
    return [e for _, ev in calls for e in ev]


def summary(evs) -> list[tuple]:
    return [("snap", round(e.time, 4), e.index) if isinstance(e, SnapEvent) else (e.event_type, round(e.time, 4))
            for e in evs]


@pytest.mark.parametrize("rate,channels", [(RATE, 1), (48000, 2), (44100, 1), (22050, 2)])
def test_any_device_rate_and_channel_count_gives_the_same_snaps_and_gestures(rate, channels):
    evs = events(run(make(rate, channels), device_scene(rate, channels), block=int(0.02 * rate)))
    snaps = [e for e in evs if isinstance(e, SnapEvent)]
    assert [e.time for e in snaps] == pytest.approx(ONSETS, abs=0.003)
    assert [e.index for e in snaps] == [1, 1, 2, 1, 2, 3, 1]
    gestures = [e for e in evs if isinstance(e, GestureEvent)]
    # the 4th snap at 4.8 s is a new gesture: max_count 3 was reached at 4.5 s
    assert [(g.event_type, round(g.time, 2)) for g in gestures] == [
        ("single_snap", 0.6), ("double_snap", 2.0), ("triple_snap", 4.0), ("single_snap", 4.8)]


@pytest.mark.parametrize("block", [37, 441, 4096, 10 ** 7])
def test_pipeline_events_do_not_depend_on_block_size(block):
    x = device_scene(44100, 2)
    ref = summary(events(run(make(44100, 2), x, block=1000)))
    assert summary(events(run(make(44100, 2), x, block=block))) == ref


def test_snaps_come_out_in_the_block_that_decides_them_and_gestures_when_the_gap_closes():
    p = make(48000, 1)
    calls = run(p, device_scene(48000, 1), block=480)  # 10 ms blocks
    lat = p.resampler.latency
    settle = p.detector.max_delay
    for now, evs in calls[:-1]:
        for e in evs:
            if isinstance(e, SnapEvent):
                assert e.detected_at <= now + 1e-9 <= e.detected_at + lat + 0.01 + 1e-9
            else:
                last = e.snaps[-1].time
                if e.count < 3:  # closed by the gap, in the first block past gap + settle
                    assert last + 0.6 + settle <= now + lat + 1e-9 <= last + 0.6 + settle + lat + 0.01 + 1e-6
                else:  # closed at once by the third snap
                    assert e.snaps[-1] in [x for x in evs if isinstance(x, SnapEvent)]
    # in every call, a gesture follows the snaps it contains
    order = events(calls)
    for i, e in enumerate(order):
        if isinstance(e, GestureEvent):
            assert all(order.index(s) < i for s in e.snaps)


def test_flush_closes_the_open_gesture_at_the_end_of_a_file():
    x = device_scene(RATE, 1, onsets=[1.0, 1.3], seconds=1.6)
    p = make()
    evs = p.process(x)
    assert [e.index for e in evs] == [1, 2]  # the gap has not expired within the file
    (g,) = p.flush()
    assert g.event_type == "double_snap" and g.time == pytest.approx(1.0, abs=0.003)


def test_paused_pipeline_reports_nothing_and_keeps_time():
    x = device_scene(RATE, 1)
    p = make()
    p.paused = True
    assert p.process(x[: 3 * RATE]) == []
    p.paused = False
    evs = p.process(x[3 * RATE:]) + p.flush()
    snaps = [e.time for e in evs if isinstance(e, SnapEvent)]
    assert snaps == pytest.approx([4.0, 4.25, 4.5, 4.8], abs=0.003)


def test_reset_closes_the_open_gesture_and_no_window_spans_the_gap():
    x = device_scene(RATE, 1, onsets=[1.0, 2.5], seconds=3.5)
    p = make()
    evs = p.process(x[: int(1.5 * RATE)])
    assert [e.index for e in evs if isinstance(e, SnapEvent)] == [1]
    (g,) = p.reset(gap_seconds=0.5)
    assert g.count == 1
    assert p.now == pytest.approx(2.0)
    # the next audio is what came 0.5 s after; its snap (at 2.5 s of the source) is now at 3.0 s
    evs = p.process(x[int(1.5 * RATE):]) + p.flush()
    assert [e.time for e in evs if isinstance(e, SnapEvent)] == pytest.approx([3.0], abs=0.003)


def test_reload_keeps_the_time_base():
    x = device_scene(48000, 1)
    p = make(48000)
    first = p.process(x[: 3 * 48000])
    p.reload(ideal_scorer(), spec=SPEC)
    rest = p.process(x[3 * 48000:]) + p.flush()
    snaps = [e.time for e in first + rest if isinstance(e, SnapEvent)]
    assert snaps == pytest.approx(ONSETS, abs=0.003)


def test_threshold_can_be_changed_live():
    x = device_scene(RATE, 1)
    p = make()
    p.set_threshold(0.99)  # above the stand-in model's 0.95: deaf
    assert p.threshold == 0.99
    assert p.process(x) == []
    with pytest.raises(ValueError):
        p.set_threshold(1.5)


def test_bad_blocks_are_refused_or_cleaned():
    p = make(RATE, 2)
    with pytest.raises(ValueError, match="channels"):
        p.process(np.zeros((100, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        p.process(np.zeros((2, 2, 2), dtype=np.float32))
    x = device_scene(RATE, 2, onsets=[1.0], seconds=1.5)
    x[100:200] = np.nan  # a glitching driver
    evs = p.process(x)
    assert [e.time for e in evs if isinstance(e, SnapEvent)] == pytest.approx([1.0], abs=0.003)


def test_recent_audio_is_the_model_rate_signal_around_an_event():
    x = device_scene(RATE, 1, onsets=[1.0], seconds=1.5)
    p = make()
    (snap,) = [e for e in p.process(x) if isinstance(e, SnapEvent)]
    clip, start = p.recent_audio(snap.time - 0.25, snap.detected_at)
    assert start == pytest.approx(snap.time - 0.25, abs=1 / RATE)
    a = int(round(start * RATE))
    assert np.array_equal(clip, x[a: a + len(clip)]) and len(clip) == int(round((snap.detected_at - start) * RATE))
    old, _ = p.recent_audio(-5, -4)
    assert len(old) == 0


def test_params_from_settings_and_defaults():
    s = Settings.load(cli_overrides={"gap": 0.4, "max_count": 2, "refractory": 0.2, "threshold": 0.6},
                      env_file=None)
    p = SnapPipeline(ideal_scorer(), s, input_rate=RATE, spec=SPEC)
    assert (p.counter.gap, p.counter.max_count, p.detector.refractory, p.threshold) == (0.4, 2, 0.2, 0.6)
    assert SnapPipeline(ideal_scorer(), None, spec=SPEC).params == DetectionParams()
    # the busy guard: on by default in the listener, set from the settings (env, YAML, flags)
    d = SnapPipeline(ideal_scorer(), None, spec=SPEC).detector
    assert (d.busy_seconds, d.busy_count, d.busy_level) == (1.5, 2, 0.6)
    s = Settings.load(cli_overrides={"busy_seconds": 0, "busy_count": 3, "busy_level": 0.7}, env_file=None)
    d = SnapPipeline(ideal_scorer(), s, spec=SPEC).detector
    assert (d.busy_seconds, d.busy_count, d.busy_level) == (0.0, 3, 0.7)
    with pytest.raises(SettingsError, match="busy_level"):
        Settings.load(cli_overrides={"busy_level": 1.5}, env_file=None)


def test_a_double_whose_second_snap_was_unsure_is_counted_as_a_double_with_the_follow_threshold():
    hop, at = SPEC.hop_samples, 3300
    ph = (-SPEC.window_samples) % hop  # the pipeline's windows end on whole hops (phase)
    x = scene([(k * hop + ph + at) / RATE for k in (40, 58, 200, 300, 318)], 8.0)
    # a sure snap then an unsure one; a lone unsure snap far from any sure one; an unsure snap
    # just before a sure one (a cup set down, then a snap: a single)
    probs = {40 * hop + ph: 0.95, 58 * hop + ph: 0.7, 200 * hop + ph: 0.7, 300 * hop + ph: 0.7, 318 * hop + ph: 0.95}

    def gestures(params):
        p = SnapPipeline(TableScorer(x, probs, phase=ph), params, input_rate=RATE, spec=SPEC)
        ev = p.process(x) + p.flush()
        return [g.count for g in ev if isinstance(g, GestureEvent)]

    assert gestures(DetectionParams(threshold=0.9)) == [1, 1]
    assert gestures(DetectionParams(threshold=0.9, follow_threshold=0.5)) == [2, 1]
    s = Settings.load(cli_overrides={"threshold": 0.9, "follow_threshold": 0.5}, env_file=None)
    assert SnapPipeline(TableScorer(x, probs, phase=ph), s, input_rate=RATE, spec=SPEC).detector.follow_threshold == 0.5


def test_weaker_snaps_after_a_full_gesture_do_not_start_another():
    hop, at = SPEC.hop_samples, 3300
    ph = (-SPEC.window_samples) % hop
    wins = (40, 55, 70, 85, 100)  # a sure snap, then four weaker ones 0.3 s apart
    x = scene([(k * hop + ph + at) / RATE for k in wins], 6.0)
    probs = {40 * hop + ph: 0.95, **{k * hop + ph: 0.7 for k in wins[1:]}}
    p = SnapPipeline(TableScorer(x, probs, phase=ph), DetectionParams(threshold=0.9, follow_threshold=0.5),
                     input_rate=RATE, spec=SPEC)
    ev = p.process(x) + p.flush()
    assert [g.count for g in ev if isinstance(g, GestureEvent)] == [3]  # not a triple and then a single


# -- the real model on the demo recording, as a 44.1 kHz stereo device would deliver it -----------------

def test_default_model_pipeline_on_the_demo_scene_at_44k1_stereo():
    from snap_mqtt.audio_io import read_audio

    truth = json.loads((ROOT / "demo" / "demo-scene.json").read_text())
    x16 = read_audio(ROOT / "demo" / "demo-scene.flac").samples
    x = resample_poly(x16, 441, 160).astype(np.float32)
    x = np.stack([x, 0.5 * x], axis=1)
    p = SnapPipeline(load_model(default_model_path()), None, input_rate=44100, channels=2)
    evs = events(run(p, x, block=441 * 4))
    snaps = [e for e in evs if isinstance(e, SnapEvent)]
    gestures = [e for e in evs if isinstance(e, GestureEvent)]
    assert [e.time for e in snaps] == pytest.approx(truth["snaps"], abs=0.05)
    assert [(g.count, round(g.time, 1)) for g in gestures] == [(g["count"], g["time"]) for g in truth["gestures"]]


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_capture_blocks_of_one_hop_complete_a_window_as_they_arrive(rate):
    """The pipeline puts window ends where blocks of whole hops end (at the model's rate, behind
    the resampler's lag): each block is scored in full as it comes, no part of it waits for the
    next block. With windows on whole hops from the stream start, every window would wait 10 ms."""
    scored = []

    def scorer(wins):
        scored.append(len(wins))
        return np.zeros(len(wins))

    p = SnapPipeline(scorer, DetectionParams(onset_gate=False), input_rate=rate, spec=SPEC)
    block = rate * SPEC.hop_samples // SPEC.sample_rate  # one hop of device audio (20 ms)
    x = (0.01 * np.random.default_rng(0).standard_normal(rate * 2)).astype(np.float32)
    complete = 0
    for i in range(0, len(x) - block + 1, block):
        p.process(x[i:i + block])
        n = sum(scored)
        if n:
            last_end = p.detector.phase + (n - 1) * SPEC.hop_samples + SPEC.window_samples
            assert last_end == p.detector.samples_seen  # the newest sample ends the newest window
            complete += 1
    assert complete >= 2 * SPEC.sample_rate // SPEC.hop_samples - 14  # all blocks after the first window
