"""Detector: windows, peak picking, refractory, latency, chunk-size invariance; constructed
probability sequences, synthetic clicks, real snap clips and the real model file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from synth_audio import RATE, SPEC, TableScorer, ideal_scorer, real_snap_scene, scene

from snap_mqtt.detector import MAX_BATCH, Detector, WindowSpec
from snap_mqtt.model_file import ModelMetadata, default_model_path, load_model, save_model

ROOT = Path(__file__).resolve().parent.parent
HOP, WIN = SPEC.hop_samples, SPEC.window_samples


def push_in_chunks(det: Detector, x: np.ndarray, sizes) -> list:
    """Feed x in blocks whose sizes cycle through `sizes`."""
    out, i, k = [], 0, 0
    sizes = list(sizes)
    while i < len(x):
        n = sizes[k % len(sizes)]
        out += det.push(x[i: i + n])
        i += n
        k += 1
    return out


def key(events) -> list[tuple]:
    return [(e.time, e.confidence, e.detected_at) for e in events]


def noise(seconds: float, seed: int = 3) -> np.ndarray:
    return (0.01 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


# -- constructed probability sequences ---------------------------------------------------------------

def test_windows_are_aligned_to_the_hop_and_scored_in_one_batch_per_block():
    x = noise(2.0)
    sc = TableScorer(x, {})
    det = Detector(sc, spec=SPEC, onset_gate=False)  # every window to the scorer (the gate: below)
    det.push(x[:WIN - 1])
    assert sc.calls == []  # no window complete yet
    det.push(x[WIN - 1: WIN])
    assert sc.calls == [1]
    det.push(x[WIN: WIN + 10 * HOP + 5])
    assert sc.calls == [1, 10]  # ten windows completed by one block: one forward call
    assert det.samples_seen == WIN + 10 * HOP + 5


def test_a_long_block_is_scored_in_bounded_batches():
    x = noise(8.0)
    sc = TableScorer(x, {})
    Detector(sc, spec=SPEC, onset_gate=False).push(x)
    n = (len(x) - WIN) // HOP + 1
    assert sum(sc.calls) == n and max(sc.calls) <= MAX_BATCH and len(sc.calls) == -(-n // MAX_BATCH)


def clicks_in(ks: list[int], seconds: float, at: int = 3300) -> np.ndarray:
    """A scene with a click `at` samples into window k for each k (in its positive region)."""
    return scene([(k * HOP + at) / RATE for k in ks], seconds)


def test_a_run_of_positive_windows_is_one_event_fired_on_its_first_window():
    start = 40 * HOP
    x = clicks_in([40], 3.0)
    probs = {start + i * HOP: p for i, p in enumerate([0.6, 0.8, 0.97, 0.9, 0.7, 0.55])}
    det = Detector(TableScorer(x, probs), spec=SPEC)
    ev = det.push(x)
    assert len(ev) == 1
    e = ev[0]
    assert e.detected_at == pytest.approx((start + WIN) / RATE)  # the first positive window's end
    assert e.confidence == pytest.approx(0.6)  # max seen so far, at the moment of firing
    assert e.time == pytest.approx((start + 3300) / RATE, abs=0.001)  # the click, localised
    assert e.timestamp  # wall clock set at creation


def test_below_threshold_and_nan_never_fire_and_the_threshold_is_overridable():
    x = clicks_in([50, 90], 3.0)
    probs = {50 * HOP: 0.45, 51 * HOP: float("nan"), 90 * HOP: 0.62}
    ev = Detector(TableScorer(x, probs), spec=SPEC).push(x)
    assert [round(e.detected_at * RATE) for e in ev] == [90 * HOP + WIN]
    assert Detector(TableScorer(x, probs), threshold=0.7, spec=SPEC).push(x) == []
    ev = Detector(TableScorer(x, probs), threshold=0.4, spec=SPEC).push(x)
    assert [round(e.detected_at * RATE) for e in ev] == [50 * HOP + WIN, 90 * HOP + WIN]


def test_separate_runs_far_apart_are_separate_events():
    x = clicks_in([20, 80, 150], 4.0)
    probs = {k * HOP: 0.9 for k in (20, 21, 22, 80, 81, 150)}
    ev = Detector(TableScorer(x, probs), spec=SPEC).push(x)
    assert [round(e.detected_at * RATE) for e in ev] == [20 * HOP + WIN, 80 * HOP + WIN, 150 * HOP + WIN]


@pytest.mark.parametrize("bad", [{"threshold": 1.0}, {"threshold": 0.0}, {"refractory": 0}, {"hop_samples": 0}])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        Detector(lambda w: np.zeros(len(w)), spec=SPEC, **bad)


def test_a_scorer_without_spec_and_a_stereo_block_are_refused():
    with pytest.raises(TypeError):
        Detector(lambda w: np.zeros(len(w)))
    det = Detector(lambda w: np.zeros(len(w)), spec=SPEC)
    with pytest.raises(ValueError, match="mono"):
        det.push(np.zeros((100, 2), dtype=np.float32))


# -- synthetic clicks: localisation, refractory, latency ---------------------------------------------

ONSETS = [0.5, 1.0, 1.25, 2.0, 2.08, 2.8]  # 1.0/1.25: 250 ms apart (two); 2.0/2.08: inside refractory


def test_click_onsets_are_localised_and_close_pairs_follow_the_refractory_time():
    x = scene(ONSETS, 3.4)
    ev = Detector(ideal_scorer(), spec=SPEC).push(x)
    times = [e.time for e in ev]
    assert times == pytest.approx([0.5, 1.0, 1.25, 2.0, 2.8], abs=0.003)


def test_the_decay_of_a_reported_snap_is_not_a_new_onset():
    x = scene([1.0], 2.0)
    onset = 16000
    # positive from the first window that holds the onset in its region to two windows whose
    # region starts 10 and 30 ms after it (only the click's decay there)
    ks = [k for k in range(30, 60) if k * HOP + SPEC.onset_min_samples <= onset + 640
          and k * HOP + SPEC.onset_max_samples >= onset]
    assert (ks[-1] * HOP + SPEC.onset_min_samples) - onset >= 320
    ev = Detector(TableScorer(x, {k * HOP: 0.9 for k in ks}), refractory=0.005, spec=SPEC).push(x)
    assert [round(e.time, 3) for e in ev] == [1.0]


def test_longer_refractory_merges_snaps_250ms_apart():
    x = scene(ONSETS, 3.4)
    ev = Detector(ideal_scorer(), refractory=0.3, spec=SPEC).push(x)
    assert [round(e.time, 2) for e in ev] == [0.5, 1.0, 2.0, 2.8]


def test_decision_comes_40_to_60_ms_after_the_onset():
    x = scene(ONSETS, 3.4)
    ev = Detector(ideal_scorer(), spec=SPEC).push(x)
    lo = (WIN - SPEC.onset_max_samples) / RATE
    for e in ev:
        assert lo - 0.003 <= e.detected_at - e.time <= lo + HOP / RATE + 0.003


@pytest.mark.parametrize("sizes", [[1], [2], [3], [7], [160], [319], [320], [321], [1000], [3999], [4000],
                                   [4001], [10 ** 9], [1, 4000, 13, 320, 999]])
def test_chunking_never_changes_the_events(sizes):
    x = scene(ONSETS, 3.4) if sizes != [1] else scene(ONSETS[:3], 1.6)
    ref = key(Detector(ideal_scorer(), spec=SPEC).push(x))
    assert len(ref) >= 3
    assert key(push_in_chunks(Detector(ideal_scorer(), spec=SPEC), x, sizes)) == ref


_SCENE = scene(ONSETS, 3.4)
_REF = key(Detector(ideal_scorer(), spec=SPEC).push(_SCENE))


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 4000), min_size=1, max_size=30))
def test_random_chunking_never_changes_the_events(sizes):
    assert len(_REF) == 5
    assert key(push_in_chunks(Detector(ideal_scorer(), spec=SPEC), _SCENE, sizes)) == _REF


def test_reset_forgets_buffered_audio_and_keeps_the_clock():
    x = scene([1.0], 1.6)
    det = Detector(ideal_scorer(), spec=SPEC)
    det.push(x[: int(1.02 * RATE)])  # the snap has started, no window has seen enough of it
    det.reset(gap_samples=RATE)  # one second of audio lost
    assert det.samples_seen == int(1.02 * RATE) + RATE
    assert det.push(x[int(1.02 * RATE):]) == []  # no window spans the gap
    det2 = Detector(ideal_scorer(), spec=SPEC)
    det2.reset(gap_samples=RATE)  # a stream that starts after a second of silence
    (e,) = det2.push(x)
    assert e.time == pytest.approx(2.0, abs=0.003)  # times count the gap


def test_refractory_state_is_cleared_by_reset():
    x = scene([0.5], 1.0)
    det = Detector(ideal_scorer(), spec=SPEC)
    assert len(det.push(x)) == 1
    det.reset()
    assert len(det.push(x)) == 1  # the same audio again after a gap is a new snap


# -- real snap recordings --------------------------------------------------------------------------

def test_real_snap_clips_in_a_quiet_room_are_found_once_each_at_their_onsets():
    x, onsets = real_snap_scene([0.6, 1.5, 1.75, 3.0, 4.2, 6.0], background=None)
    ev = Detector(ideal_scorer(min_prominence_db=25), spec=SPEC).push(x)
    assert [e.time for e in ev] == pytest.approx(onsets, abs=0.005)


# -- the real model file ---------------------------------------------------------------------------

class _Loud(torch.nn.Module):
    """A real TorchScript model for plumbing tests: positive when a loud sample lies in the
    window's onset region."""

    def __init__(self, lo: int, hi: int):
        super().__init__()
        self.lo, self.hi = lo, hi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x[:, self.lo: self.hi].abs().amax(dim=1) * 50.0 - 5.0)


def _tiny_model(tmp_path: Path, **meta) -> Path:
    fields = dict(sample_rate=16000, window_samples=4000, hop_samples=320, threshold=0.5,
                  trainer_version="test", onset_min_samples=1440, onset_max_samples=3360)
    fields.update(meta)
    module = torch.jit.script(_Loud(fields["onset_min_samples"], fields["onset_max_samples"]))
    return save_model(module, ModelMetadata(**fields), tmp_path / "tiny.pt")


def test_window_hop_threshold_come_from_the_model_file_and_can_be_overridden(tmp_path):
    model = load_model(_tiny_model(tmp_path, sample_rate=8000, window_samples=2000, hop_samples=160,
                                   threshold=0.7, onset_min_samples=720, onset_max_samples=1680))
    det = Detector(model)
    assert (det.sample_rate, det.window, det.hop, det.threshold) == (8000, 2000, 160, 0.7)
    det = Detector(model, threshold=0.4, hop_samples=80)
    assert (det.hop, det.threshold) == (80, 0.4)
    x = np.zeros(8000, dtype=np.float32)
    x[4000:4010] = 0.5  # loud enough for the tiny model
    ev = det.push(x)
    assert len(ev) == 1 and 0.45 <= ev[0].time <= 0.52


def _demo():
    from snap_mqtt.audio_io import read_audio

    truth = json.loads((ROOT / "demo" / "demo-scene.json").read_text())
    return read_audio(ROOT / "demo" / "demo-scene.flac").samples, truth


def test_default_model_on_the_demo_scene_finds_each_snap_once_chunking_aside():
    model = load_model(default_model_path())
    x, truth = _demo()
    assert model.metadata.sample_rate == truth["sample_rate"]
    ref = Detector(model).push(x)
    assert [e.time for e in ref] == pytest.approx(truth["snaps"], abs=0.05)
    for sizes in ([333], [4000], [1, 50, 7919]):
        got = push_in_chunks(Detector(model), x, sizes)
        assert [e.time for e in got] == [e.time for e in ref]
        assert [e.confidence for e in got] == pytest.approx([e.confidence for e in ref], abs=1e-5)


def test_windowspec_without_onset_region_assumes_the_whole_window():
    meta = ModelMetadata(sample_rate=16000, window_samples=4000, hop_samples=320, threshold=0.5,
                         trainer_version="x")
    spec = WindowSpec.from_metadata(meta)
    assert (spec.onset_min_samples, spec.onset_max_samples) == (0, 3999)


# -- the onset gate: which windows go to the model -------------------------------------------------

def _fixture_audio() -> list[np.ndarray]:
    """Real recordings at the model's rate: every background fixture, the no_snap clips end to end,
    real snaps in a keyboard background, and synthetic clicks in low noise."""
    from snap_mqtt.audio_io import read_audio

    fx = ROOT / "tests" / "fixtures" / "audio"
    out = [read_audio(p, sample_rate=RATE).samples for p in sorted((fx / "background").glob("*.flac"))]
    out.append(np.concatenate([read_audio(p, sample_rate=RATE).samples for p in sorted((fx / "no_snap").glob("*.flac"))]))
    out.append(real_snap_scene([0.6, 1.0, 1.35, 3.1, 5.2], "keyboard", seconds=6.0)[0])
    out.append(scene([0.5, 0.8, 2.0, 2.3, 2.6], 3.5))
    return out


def test_onset_gate_passes_every_window_the_detector_could_fire_on():
    """The gate only saves work: a window it keeps from the model is one `_localise` rejects."""
    det = Detector(lambda w: np.zeros(len(w)), spec=SPEC)
    kept = accepted = total = 0
    for x in _fixture_audio():
        n = (len(x) - WIN) // HOP + 1
        wins = np.lib.stride_tricks.sliding_window_view(x, WIN)[::HOP][:n]
        gate = det._gate.candidates(wins)
        for k in range(n):
            if det._localise(wins[k]) is not None:
                accepted += 1
                assert gate[k], f"window {k}: the detector could fire here, the gate kept it from the model"
        kept += int(gate.sum())
        total += n
    assert accepted > 20  # the fixtures do hold onsets
    assert kept < 0.8 * total  # and the gate does keep windows from the model


def test_onset_gate_rejects_steady_noise_and_silence():
    det = Detector(lambda w: np.zeros(len(w)), spec=SPEC)
    wins = np.stack([noise(0.25, seed=s)[:WIN] for s in range(20)] + [np.zeros(WIN, np.float32)])
    assert det._gate.candidates(wins).sum() <= 2


def test_default_model_gives_the_same_events_with_and_without_the_gate_on_fewer_windows():
    model = load_model(default_model_path())
    x, truth = _demo()
    counted = []

    def scorer(w):
        counted.append(len(w))
        return model.predict(torch.from_numpy(np.array(w))).numpy()

    spec = WindowSpec.from_metadata(model.metadata)
    plain = Detector(scorer, spec=spec, onset_gate=False).push(x)
    n_plain = sum(counted)
    counted.clear()
    gated = Detector(scorer, spec=spec).push(x)
    assert [e.time for e in gated] == [e.time for e in plain]
    assert len(gated) == len(truth["snaps"])
    assert sum(counted) < 0.8 * n_plain  # (the demo scene has a background: most windows stay)


# -- the follow threshold: the 2nd/3rd snap of a gesture needs less ------------------------------------

def _fired_windows(events) -> list[int]:
    return [round(e.detected_at * RATE) - WIN for e in events]


def test_follow_threshold_fires_a_weaker_snap_after_a_sure_one_within_the_gap_only():
    # sure snap in window 40; weaker ones 0.35 s later (window 57) and 2 s later (window 140)
    x = clicks_in([40, 57, 140], 4.0)
    probs = {40 * HOP: 0.97, 57 * HOP: 0.6, 140 * HOP: 0.6}
    one = Detector(TableScorer(x, probs), threshold=0.9, spec=SPEC).push(x)
    assert _fired_windows(one) == [40 * HOP]  # one threshold: the weaker snaps are lost
    det = Detector(TableScorer(x, probs), threshold=0.9, follow_threshold=0.5, follow_seconds=0.6, spec=SPEC)
    ev = det.push(x)
    assert _fired_windows(ev) == [40 * HOP, 57 * HOP]  # the far one would start a gesture: not sure enough
    assert ev[1].confidence == pytest.approx(0.6)
    # below the follow threshold nothing changes
    probs[57 * HOP] = 0.45
    ev = Detector(TableScorer(x, probs), threshold=0.9, follow_threshold=0.5, follow_seconds=0.6, spec=SPEC).push(x)
    assert _fired_windows(ev) == [40 * HOP]


def test_weaker_snaps_before_a_sure_one_are_never_reported():
    # a triple whose first two snaps are unsure, the sure one last: only the sure one (and what
    # follows it) counts, since anything in the half second before a snap would add to its count
    x = clicks_in([40, 55, 70, 85], 3.0)
    probs = {40 * HOP: 0.6, 41 * HOP: 0.7, 55 * HOP: 0.55, 70 * HOP: 0.95, 85 * HOP: 0.6}
    ev = Detector(TableScorer(x, probs), threshold=0.9, follow_threshold=0.5, follow_seconds=0.6, spec=SPEC).push(x)
    assert _fired_windows(ev) == [70 * HOP, 85 * HOP]
    assert ev[0].confidence == pytest.approx(0.95) and ev[1].confidence == pytest.approx(0.6)


def test_follow_threshold_off_by_default_and_from_the_model_metadata():
    x = clicks_in([40, 57], 3.0)
    probs = {40 * HOP: 0.97, 57 * HOP: 0.6}
    assert len(Detector(TableScorer(x, probs), threshold=0.9, follow_seconds=0.6, spec=SPEC).push(x)) == 1
    spec = WindowSpec(**{**SPEC.__dict__, "threshold": 0.9, "follow_threshold": 0.5})
    assert len(Detector(TableScorer(x, probs), follow_seconds=0.6, spec=spec).push(x)) == 2
    assert len(Detector(TableScorer(x, probs), follow_seconds=0.0, spec=spec).push(x)) == 1  # no gap: no rule
    with pytest.raises(ValueError, match="follow_threshold"):
        Detector(TableScorer(x, probs), follow_threshold=1.5, spec=SPEC)


@given(st.lists(st.integers(1, 700), min_size=1, max_size=12))
@settings(max_examples=25, deadline=None)
def test_follow_rule_events_do_not_depend_on_block_sizes(sizes):
    x = clicks_in([30, 45, 60, 130, 142], 4.0)
    probs = {30 * HOP: 0.6, 45 * HOP: 0.95, 60 * HOP: 0.55, 130 * HOP: 0.6, 142 * HOP: 0.93}

    def det():
        return Detector(TableScorer(x, probs), threshold=0.9, follow_threshold=0.5, follow_seconds=0.6, spec=SPEC)

    whole = det().push(x)
    assert len(whole) == 3  # 45 and 142 (sure), 60 (after a sure one); 30 and 130 come before one
    assert key(push_in_chunks(det(), x, sizes)) == key(whole)


def test_the_window_phase_shifts_every_window_and_is_set_only_on_a_fresh_detector():
    x = noise(1.0)
    starts = {s: 0.0 for s in range(0, len(x), 1)}  # every start known: see where windows begin
    sc = TableScorer(x, starts, hop=1)
    det = Detector(sc, spec=SPEC, onset_gate=False, phase=100)
    det.push(x[:WIN + 100 + 2 * HOP])
    assert sum(sc.calls) == 3  # windows at 100, 100 + HOP, 100 + 2 HOP: the first ends WIN + 100 in
    with pytest.raises(RuntimeError, match="reset"):
        det.set_phase(0)
    det.reset()
    det.set_phase(HOP + 7)  # taken modulo the hop
    assert det.phase == 7


def test_follow_threshold_stops_when_the_gesture_is_full():
    # a sure snap, then four weaker ones 0.3 s apart (a clatter): only two may join it, as the
    # gesture counter closes a triple at once and the next snap would start a gesture by itself
    wins = [40, 55, 70, 85, 100]
    x = clicks_in(wins, 4.0)
    probs = {40 * HOP: 0.97, **{w * HOP: 0.6 for w in wins[1:]}}

    def fired(max_count, probs=probs):
        return _fired_windows(Detector(TableScorer(x, probs), threshold=0.9, follow_threshold=0.5,
                                       follow_seconds=0.6, follow_max_count=max_count, spec=SPEC).push(x))

    assert fired(3) == [40 * HOP, 55 * HOP, 70 * HOP]
    assert fired(2) == [40 * HOP, 55 * HOP]
    # a sure snap after the full gesture starts the next one, and weaker ones may join that
    sure4 = {**probs, 85 * HOP: 0.95}
    assert fired(3, sure4) == [40 * HOP, 55 * HOP, 70 * HOP, 85 * HOP, 100 * HOP]
    with pytest.raises(ValueError, match="follow_max_count"):
        Detector(TableScorer(x, probs), follow_max_count=0, spec=SPEC)


# -- the busy guard: no gesture starts right after a run of near misses (music's snares and claps) -----

def _busy(x, probs, **kw) -> Detector:
    return Detector(TableScorer(x, probs), threshold=0.9, follow_threshold=0.5, follow_seconds=0.6, spec=SPEC,
                    **{"busy_seconds": 1.5, **kw})


def test_busy_guard_keeps_a_sure_snap_after_two_near_misses_from_starting_a_gesture():
    # a beat every 0.4 s (20 windows): two hits that look a bit like snaps, then one that looks sure
    x = clicks_in([20, 40, 60, 140], 4.0)
    probs = {20 * HOP: 0.6, 40 * HOP: 0.7, 60 * HOP: 0.95, 140 * HOP: 0.95}
    assert _fired_windows(_busy(x, probs, busy_seconds=0).push(x)) == [60 * HOP, 140 * HOP]  # off: fires
    # on: the sure hit at 60 is the third snap-like sound in 0.8 s, so it starts nothing; the one at
    # 140 comes 1.6 s after the last near miss it could count (60 itself) and 2.4 s after 40: it fires
    assert _fired_windows(_busy(x, probs).push(x)) == [140 * HOP]
    # one near miss is not enough, nor are sounds under busy_level
    assert _fired_windows(_busy(x, {**probs, 20 * HOP: 0.0}).push(x)) == [60 * HOP, 140 * HOP]
    assert _fired_windows(_busy(x, {**probs, 20 * HOP: 0.45, 40 * HOP: 0.45}).push(x)) == [60 * HOP, 140 * HOP]
    assert _fired_windows(_busy(x, {**probs, 20 * HOP: 0.45}, busy_level=0.4).push(x)) == [140 * HOP]
    assert _fired_windows(_busy(x, {**probs, 20 * HOP: 0.0}, busy_count=1).push(x)) == [140 * HOP]


def test_busy_guard_counts_one_sound_once_and_forgets_old_ones():
    # one near miss seen by two windows (the same onset) is one sound, not two
    x = clicks_in([20, 60], 3.0)
    assert _fired_windows(_busy(x, {20 * HOP: 0.6, 21 * HOP: 0.7, 60 * HOP: 0.95}).push(x)) == [60 * HOP]
    # two near misses more than busy_seconds before the snap are forgotten
    x = clicks_in([20, 35, 115], 4.0)  # 115 is 1.6 s after 35
    assert _fired_windows(_busy(x, {20 * HOP: 0.6, 35 * HOP: 0.6, 115 * HOP: 0.95}).push(x)) == [115 * HOP]


def test_busy_guard_never_counts_reported_snaps_and_leaves_follows_alone():
    # a user's double snap (sure, then a weaker one that joins), and a single 1.2 s later: both
    # gestures are reported, and the weaker second snap still joins the first
    x = clicks_in([40, 57, 117], 4.0)
    probs = {39 * HOP: 0.6, 40 * HOP: 0.97, 57 * HOP: 0.6, 117 * HOP: 0.95}  # 39: the first snap's early window
    assert _fired_windows(_busy(x, probs).push(x)) == [40 * HOP, 57 * HOP, 117 * HOP]
    # within a gesture the guard does not apply: near misses before a follow do not stop it
    x = clicks_in([20, 30, 40, 55], 3.0)
    probs = {20 * HOP: 0.6, 30 * HOP: 0.6, 40 * HOP: 0.97, 55 * HOP: 0.6}
    assert _fired_windows(_busy(x, probs).push(x)) == []  # 40 is busy: nothing for 55 to join
    assert _fired_windows(_busy(x, {**probs, 20 * HOP: 0.0}).push(x)) == [40 * HOP, 55 * HOP]


@given(st.lists(st.integers(1, 700), min_size=1, max_size=12))
@settings(max_examples=25, deadline=None)
def test_busy_guard_events_do_not_depend_on_block_sizes(sizes):
    x = clicks_in([10, 25, 40, 60, 130, 147], 4.0)
    probs = {10 * HOP: 0.6, 25 * HOP: 0.7, 40 * HOP: 0.95, 60 * HOP: 0.55, 130 * HOP: 0.97, 147 * HOP: 0.6}
    whole = _busy(x, probs).push(x)
    assert _fired_windows(whole) == [130 * HOP, 147 * HOP]
    assert key(push_in_chunks(_busy(x, probs), x, sizes)) == key(whole)


@pytest.mark.parametrize("bad", [{"busy_seconds": -1}, {"busy_count": 0}, {"busy_level": 1.0}, {"busy_level": 0}])
def test_busy_guard_refuses_bad_parameters(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        Detector(ideal_scorer(), spec=SPEC, **bad)
