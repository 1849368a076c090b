"""GestureCounter: gap, max count, emission exactly once, settle time, on constructed snaps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snap_mqtt.events import SnapEvent
from snap_mqtt.gestures import GestureCounter


def snap(t: float, conf: float = 0.9, stamp: str = "") -> SnapEvent:
    return SnapEvent(time=t, confidence=conf, detected_at=t + 0.05, timestamp=stamp or f"T{t}")


def run(counter: GestureCounter, times: list[float], end: float | None = None):
    """Feed snaps with the audio clock advancing between them, as the pipeline does."""
    out = []
    for t in times:
        s = snap(t)
        out += counter.advance(s.detected_at)
        s, closed = counter.add(s)
        out += [s] + closed
    if end is not None:
        out += counter.advance(end)
    return out


def gestures(events):
    return [e for e in events if not isinstance(e, SnapEvent)]


def test_single_snap_waits_for_the_gap_then_emits_once():
    c = GestureCounter(gap=0.6, max_count=3)
    s, closed = c.add(snap(1.0))
    assert s.index == 1 and closed == []
    assert c.advance(1.59) == []
    g = c.advance(1.6)
    assert [(x.event_type, x.count, x.time) for x in g] == [("single_snap", 1, 1.0)]
    assert c.advance(5.0) == [] and c.flush() == []


def test_double_and_triple_indices_and_types():
    c = GestureCounter(gap=0.6, max_count=3)
    ev = run(c, [1.0, 1.35, 5.0, 5.3, 5.65], end=10.0)
    snaps = [e for e in ev if isinstance(e, SnapEvent)]
    assert [s.index for s in snaps] == [1, 2, 1, 2, 3]
    assert [(g.event_type, g.count, g.time) for g in gestures(ev)] == [("double_snap", 2, 1.0),
                                                                        ("triple_snap", 3, 5.0)]


def test_triple_fires_at_max_count_without_waiting_and_never_also_double():
    c = GestureCounter(gap=0.6, max_count=3)
    out = []
    for t in (2.0, 2.3):
        _, closed = c.add(snap(t))
        out += closed
    assert out == []
    _, closed = c.add(snap(2.6))
    assert [g.count for g in closed] == [3]  # emitted with the third snap, no gap wait
    assert c.advance(100.0) == [] and c.flush() == []


def test_a_fourth_snap_starts_a_new_gesture():
    c = GestureCounter(gap=0.6, max_count=3)
    ev = run(c, [1.0, 1.2, 1.4, 1.6], end=3.0)
    assert [g.count for g in gestures(ev)] == [3, 1]
    assert [e.index for e in ev if isinstance(e, SnapEvent)] == [1, 2, 3, 1]


def test_max_count_one_emits_each_snap_at_once():
    c = GestureCounter(gap=0.6, max_count=1)
    for t in (1.0, 1.2, 1.4):
        s, closed = c.add(snap(t))
        assert s.index == 1
        assert [(g.event_type, g.time) for g in closed] == [("single_snap", t)]


def test_snaps_exactly_gap_apart_are_two_gestures():
    c = GestureCounter(gap=0.5, max_count=3)
    ev = run(c, [1.0, 1.5], end=3.0)
    assert [g.count for g in gestures(ev)] == [1, 1]


def test_add_after_a_late_advance_closes_the_previous_gesture_first():
    c = GestureCounter(gap=0.6, max_count=3)
    c.add(snap(1.0))
    s, closed = c.add(snap(2.0))  # nobody advanced the clock in between
    assert [g.count for g in closed] == [1] and s.index == 1


def test_without_settle_a_late_reported_snap_inside_the_gap_would_start_a_new_gesture():
    # why the pipeline passes the detector's longest decision delay as `settle`
    c = GestureCounter(gap=0.6, max_count=3, settle=0.0)
    ev = run(c, [1.0, 1.58])  # reported at 1.63, after the gap closed at 1.6
    assert [g.count for g in gestures(ev) + c.flush()] == [1, 1]


def test_settle_delays_closing_so_a_late_reported_snap_still_joins():
    c = GestureCounter(gap=0.6, max_count=3, settle=0.2)
    c.add(snap(1.0))
    assert c.advance(1.7) == []  # past the gap but inside the settle time
    _, closed = c.add(snap(1.55))  # onset inside the gap, reported late
    assert closed == []
    assert [g.count for g in c.advance(1.55 + 0.8)] == [2]
    assert c.closes_at is None


def test_confidence_is_the_weakest_snap_and_timestamps_are_kept():
    c = GestureCounter(gap=0.6, max_count=3)
    c.add(snap(1.0, 0.9, "a"))
    c.add(snap(1.3, 0.6, "b"))
    (g,) = c.flush()
    assert g.confidence == pytest.approx(0.6)
    assert [s.timestamp for s in g.snaps] == ["a", "b"]
    assert g.timestamp  # set when the gesture was created
    p = g.payload()
    assert p["event_type"] == "double_snap" and p["count"] == 2 and p["time"] == 1.0


def test_reset_drops_the_open_gesture_and_flush_emits_it():
    c = GestureCounter()
    c.add(snap(1.0))
    c.reset()
    assert c.flush() == [] and c.open_count == 0
    c.add(snap(2.0))
    assert [g.count for g in c.flush()] == [1]


@pytest.mark.parametrize("kwargs", [{"gap": 0}, {"max_count": 0}, {"settle": -1}])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        GestureCounter(**kwargs)


@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.floats(0.05, 2.0), min_size=1, max_size=12),
       gap=st.floats(0.2, 1.0), max_count=st.integers(1, 4))
def test_every_snap_is_in_exactly_one_gesture_counted_once(gaps, gap, max_count):
    times = []
    t = 0.5
    for d in gaps:
        t += d
        times.append(round(t, 6))
    # settle = the 50 ms by which `snap()` reports each snap after its onset
    c = GestureCounter(gap=gap, max_count=max_count, settle=0.05)
    ev = run(c, times)
    ev += c.flush()
    gs = gestures(ev)
    members = [s.time for g in gs for s in g.snaps]
    assert members == times  # all snaps, in order, each once
    for g in gs:
        assert 1 <= g.count <= max_count and g.count == len(g.snaps)
        assert [s.index for s in g.snaps] == list(range(1, g.count + 1))
        assert all(b.time - a.time < gap for a, b in zip(g.snaps, g.snaps[1:]))
    for g, h in zip(gs, gs[1:]):  # a gesture ended because the gap passed or it was full
        assert h.snaps[0].time - g.snaps[-1].time >= gap - 1e-9 or g.count == max_count
