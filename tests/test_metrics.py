"""Event-level metric code on hand-made cases: known detections give known figures."""

from __future__ import annotations

import math

import pytest

from trainer.metrics import (
    LEVEL_BANDS_DB,
    MISSED,
    SPLIT,
    Gesture,
    GestureScore,
    Rate,
    SnapScore,
    SweepPoint,
    best_threshold,
    false_gestures_by_count,
    match_events,
    poisson_upper,
    recall_by_band,
    snr_band,
)


def test_match_within_tolerance_one_to_one():
    truth = [1.0, 2.0, 3.0, 4.0]
    dets = [1.05, 1.10, 2.2, 3.0, 9.0]  # 1.10 is a duplicate of 1.0; 2.2 is 200 ms late
    m = match_events(truth, dets, tolerance=0.15)
    assert m.pairs == ((0, 0), (2, 3))
    assert m.unmatched_true == (1, 3)
    assert m.unmatched_det == (1, 2, 4)
    assert m.errors == pytest.approx((0.05, 0.0))


def test_match_prefers_more_pairs_over_smaller_error():
    # nearest-first greed would pair 1.20 with 1.12 (80 ms) and leave both 1.00 and 1.33 alone;
    # the maximal matching pairs 1.00-1.12 and 1.20-1.33
    truth = [1.00, 1.20]
    dets = [1.12, 1.33]
    m = match_events(truth, dets, tolerance=0.15)
    assert len(m.pairs) == 2
    assert m.pairs == ((0, 0), (1, 1))


def test_match_empty_sides():
    assert match_events([], [1.0]).unmatched_det == (0,)
    assert match_events([1.0, 2.0], []).unmatched_true == (0, 1)


def test_snap_score_precision_recall_f1_and_onset_error():
    s = SnapScore()
    s.add([1.0, 2.0, 3.0, 4.0], [1.01, 2.03, 3.0, 7.0, 8.0])  # 3 tp, 2 fp, 1 fn
    s.add([10.0], [10.02])  # 1 tp
    assert (s.tp, s.fp, s.fn) == (4, 2, 1)
    assert s.precision == pytest.approx(4 / 6)
    assert s.recall == pytest.approx(4 / 5)
    assert s.f1 == pytest.approx(2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5))
    # errors 10, 30, 0, 20 ms -> median 15 ms
    assert s.median_abs_error_ms == pytest.approx(15.0)
    assert s.summary()["median_onset_error_ms"] == pytest.approx(15.0)


def test_snap_score_nothing_detected():
    s = SnapScore()
    s.add([1.0, 2.0], [])
    assert s.recall == 0.0 and s.f1 == 0.0 and s.median_abs_error_ms is None


def test_gesture_counts_confusion_and_false_gestures():
    truth = [Gesture.of([2.0]), Gesture.of([8.0, 8.35]), Gesture.of([15.0, 15.3, 15.65]),
             Gesture.of([20.0, 20.4]), Gesture.of([25.0, 25.3, 25.6])]
    reported = [
        Gesture.of([2.01]),  # single: right
        Gesture.of([8.36]),  # double with its first snap missed: reported as 1
        Gesture.of([15.02, 15.31, 15.66]),  # triple: right
        # the double at 20 s: nothing reported -> missed
        Gesture.of([25.0]), Gesture.of([25.62]),  # a triple broken into two gestures -> split
        Gesture.of([40.0, 40.3]),  # nothing there -> false gesture
    ]
    g = GestureScore()
    got = g.add(truth, reported)
    assert got == [1, 1, 3, MISSED, SPLIT]
    assert g.total == 5 and g.exact == 2
    assert g.exact_share == pytest.approx(0.4)
    assert g.false_gestures == 1
    assert g.table() == {"true 1": {"1": 1}, "true 2": {"missed": 1, "1": 1},
                         "true 3": {"split": 1, "3": 1}}


def test_gesture_overcount_is_wrong_count():
    g = GestureScore()
    got = g.add([Gesture.of([5.0, 5.3])], [Gesture.of([5.0, 5.3, 5.45])])
    assert got == [3] and g.exact == 0 and g.false_gestures == 0


def test_poisson_upper_bound():
    assert poisson_upper(0) == pytest.approx(2.9957, abs=1e-3)  # the "3 / hours" rule
    assert poisson_upper(1) == pytest.approx(4.7439, abs=1e-3)
    assert poisson_upper(10) == pytest.approx(17.0, abs=0.1)


def test_rates_per_hour():
    r = Rate(events=0, hours=0.25)
    assert r.per_hour == 0.0
    assert r.upper95_per_hour == pytest.approx(2.9957 / 0.25, abs=1e-2)
    r2 = Rate(events=3, hours=1.5)
    assert r2.per_hour == pytest.approx(2.0)
    assert r2.upper95_per_hour > r2.per_hour
    assert math.isinf(Rate(0, 0.0).per_hour)


def test_false_gestures_by_count():
    r = false_gestures_by_count([1, 1, 2, 3, 1, 2], hours=0.5)
    assert [r[k]["events"] for k in ("1", "2", "3", "2+")] == [3, 2, 1, 3]
    assert r["2"]["per_hour"] == pytest.approx(4.0)
    assert r["2+"]["per_hour"] == pytest.approx(6.0)
    none = false_gestures_by_count([], hours=2.0)
    assert none["2+"]["events"] == 0 and none["2+"]["upper95_per_hour"] == pytest.approx(2.9957 / 2, abs=1e-3)


def test_snr_bands_and_recall_by_band():
    assert [snr_band(x) for x in (1, 3, 9.9, 10, 25, 30, 40)] == \
        ["<3", "3-10", "3-10", "10-20", "20-30", ">=30", ">=30"]
    out = recall_by_band([4, 5, 6, 12, 25, 26], [False, True, True, True, True, False])
    assert list(out) == ["3-10", "10-20", "20-30"]
    assert out["3-10"] == {"snaps": 3, "detected": 2, "recall": pytest.approx(2 / 3)}
    assert out["20-30"]["recall"] == pytest.approx(0.5)
    # the same bands over levels: a snap's peak, dB below full scale
    lv = recall_by_band([3, 15, 25, 35, 45, 45], [True, True, False, True, False, False], LEVEL_BANDS_DB)
    assert list(lv) == ["<10", "10-20", "20-30", "30-40", ">=40"]
    assert lv[">=40"] == {"snaps": 2, "detected": 0, "recall": 0.0} and lv["30-40"]["recall"] == 1.0


def test_best_threshold_respects_false_gesture_budget():
    pts = [SweepPoint(t, 1, r, 1, 0, fg, 1) for t, r, fg in
           [(0.3, 0.99, 4.0), (0.5, 0.97, 0.4), (0.7, 0.97, 0.0), (0.9, 0.80, 0.0)]]
    assert best_threshold(pts, 0.5).threshold == 0.7
    assert best_threshold(pts, 10).threshold == 0.3
    assert best_threshold(pts[:1], 0.5) is None


def test_score_splits_false_gestures_by_count_per_kind():
    from pathlib import Path

    from trainer.evaluate import Detections, Recording, score

    recs = [Recording(Path("s.flac"), "scene", "music", 16000, 30.0, [1.0, 1.3], [10.0, 10.0], [Gesture.of([1.0, 1.3])]),
            Recording(Path("m.flac"), "negative", "music", 16000, 1800.0),
            Recording(Path("k.flac"), "negative", "keyboard", 16000, 1800.0)]
    dets = [Detections([1.0, 1.3], [Gesture.of([1.0, 1.3])]),
            Detections([5.0, 9.0, 9.4], [Gesture.of([5.0]), Gesture.of([9.0, 9.4])]),
            Detections([7.0], [Gesture.of([7.0])])]
    res = score(recs, dets)
    n = res["negatives"]
    assert n["hours"] == pytest.approx(1.0)
    assert n["false_gestures"]["events"] == 3 and n["false_snaps"]["events"] == 4
    assert (n["false_gestures_by_count"]["1"]["events"], n["false_gestures_by_count"]["2+"]["events"]) == (2, 1)
    music = res["by_kind"]["music"]["negatives"]["false_gestures_by_count"]
    assert music["2"]["per_hour"] == pytest.approx(2.0) and music["1"]["per_hour"] == pytest.approx(2.0)
    assert res["by_kind"]["keyboard"]["negatives"]["false_gestures_by_count"]["2+"]["events"] == 0
    assert res["gestures"]["exact_count"] == 1
