"""Counting snaps into gestures (pure logic, audio time only, no I/O).

Snaps whose onsets are closer than `gap` form one gesture. A gesture is emitted exactly once:
when `max_count` snaps are in it (at once; a further snap starts a new gesture), or when no
further snap can join it any more, i.e. the audio clock has passed the last onset + `gap` +
`settle`. `settle` is the longest a detector may take to report a snap after its onset: without
it a snap made just inside the gap but reported just after it would start a new gesture. So three
snaps never also fire "double", whatever the block size.
"""

from __future__ import annotations

from dataclasses import replace

from snap_mqtt.events import GestureEvent, SnapEvent, iso_now


class GestureCounter:
    def __init__(self, gap: float = 0.6, max_count: int = 3, settle: float = 0.0):
        if gap <= 0:
            raise ValueError(f"gap must be > 0 seconds, got {gap}")
        if max_count < 1:
            raise ValueError(f"max_count must be >= 1, got {max_count}")
        if settle < 0:
            raise ValueError(f"settle must be >= 0 seconds, got {settle}")
        self.gap = float(gap)
        self.max_count = int(max_count)
        self.settle = float(settle)
        self._open: list[SnapEvent] = []

    @property
    def open_count(self) -> int:
        """Snaps in the gesture not yet emitted."""
        return len(self._open)

    @property
    def closes_at(self) -> float | None:
        """Audio time at which the open gesture closes if no snap joins it (None: nothing open)."""
        return self._open[-1].time + self.gap + self.settle if self._open else None

    def add(self, snap: SnapEvent) -> tuple[SnapEvent, list[GestureEvent]]:
        """Count a snap. Returns the snap with its `index` in its gesture, and the gestures this
        closes: the previous one if the snap came after the gap, this one if it is full."""
        out: list[GestureEvent] = []
        if self._open and snap.time - self._open[-1].time >= self.gap:
            out.append(self._close())
        snap = replace(snap, index=len(self._open) + 1)
        self._open.append(snap)
        if len(self._open) >= self.max_count:
            out.append(self._close())
        return snap, out

    def advance(self, now: float) -> list[GestureEvent]:
        """The audio clock reached `now` seconds: close the open gesture if no snap can join it."""
        if self._open and now >= self._open[-1].time + self.gap + self.settle:
            return [self._close()]
        return []

    def flush(self) -> list[GestureEvent]:
        """End of stream: emit the open gesture, if any."""
        return [self._close()] if self._open else []

    def reset(self) -> None:
        """Forget the open gesture without emitting it."""
        self._open = []

    def _close(self) -> GestureEvent:
        snaps = tuple(self._open)
        self._open = []
        return GestureEvent(count=len(snaps), time=snaps[0].time,
                            confidence=min(s.confidence for s in snaps), snaps=snaps, timestamp=iso_now())
