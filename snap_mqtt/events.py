"""Events the detector and the gesture counter emit, and their MQTT / JSON payloads (the contract
documented in the README)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

GESTURE_TYPES = {1: "single_snap", 2: "double_snap", 3: "triple_snap"}


def iso_now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class SnapEvent:
    """One snap. `time`: its onset in seconds of audio since the stream began. `detected_at`:
    seconds of audio consumed when the detector became sure (time + decision delay)."""

    time: float
    confidence: float
    detected_at: float
    index: int = 1  # place in its gesture, filled in by the gesture counter
    timestamp: str = ""  # wall clock at detection, set once

    def payload(self) -> dict:
        return {"event_type": "snap", "index": self.index, "confidence": round(self.confidence, 4),
                "time": round(self.time, 4), "timestamp": self.timestamp}


@dataclass(frozen=True)
class GestureEvent:
    """A run of snaps closer than the gap. `time`: onset of its first snap."""

    count: int
    time: float
    confidence: float  # the lowest confidence of its snaps: a gesture is as sure as its weakest snap
    snaps: tuple[SnapEvent, ...]
    timestamp: str = ""

    @property
    def event_type(self) -> str:
        return GESTURE_TYPES.get(self.count, f"{self.count}_snaps")

    def payload(self) -> dict:
        return {"event_type": self.event_type, "count": self.count, "confidence": round(self.confidence, 4),
                "time": round(self.time, 4), "timestamp": self.timestamp}
