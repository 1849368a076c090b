"""Replay an audio file as if it were a microphone: blocks at the file's own rate and channel
count go into the same BlockQueue the capture callback fills, paced in real time (or `speed`
times faster; speed 0 = as fast as the detector takes them). Used by `listen --input` for demos,
tests, latency measurement and soak runs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from snap_mqtt.audio_io import MAX_RATE, MIN_RATE, AudioFileError
from snap_mqtt.capture import AudioBlock, AudioEnd, BlockQueue

log = logging.getLogger("snap_mqtt.file_source")


class FileSource:
    def __init__(self, path: str | Path, out: BlockQueue, *, speed: float = 1.0, block_seconds: float = 0.05,
                 on_state: Callable[[bool], None] | None = None) -> None:
        self.path = Path(path)
        if speed < 0:
            raise ValueError(f"--speed {speed}: must be >= 0 (0 = as fast as possible)")
        self.out = out
        self.speed = speed
        self.block_seconds = block_seconds
        self.on_state = on_state or (lambda up: None)
        # open now, so a missing or unreadable file is an error at start that names the file
        if not self.path.is_file():
            raise AudioFileError(f"{self.path}: no such audio file")
        try:
            with sf.SoundFile(str(self.path)) as f:
                self.sample_rate = int(f.samplerate)
                self.channels = int(f.channels)
                self.frames = int(f.frames)
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
            raise AudioFileError(f"{self.path}: unreadable or unsupported audio ({exc})") from None
        if self.frames <= 0 or self.sample_rate <= 0:
            raise AudioFileError(f"{self.path}: no audio samples")
        if not MIN_RATE <= self.sample_rate <= MAX_RATE:  # a corrupt header: 1 Hz would resample forever
            raise AudioFileError(f"{self.path}: implausible sample rate {self.sample_rate} Hz "
                                 f"(supported: {MIN_RATE}-{MAX_RATE} Hz)")

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate

    def run(self, stop: threading.Event) -> None:
        # faster than real time, blocks grow with the speed (the same wall-clock pace of blocks as
        # a microphone): chunking never changes the events, and per-block overhead stays flat
        scale = max(1.0, self.speed) if self.speed > 0 else 25.0
        block = max(1, int(self.sample_rate * self.block_seconds * scale))
        sent = 0
        t0 = time.monotonic()
        self.on_state(True)
        try:
            with sf.SoundFile(str(self.path)) as f:
                while not stop.is_set():
                    try:
                        data = f.read(block, dtype="float32", always_2d=True)
                    except (sf.LibsndfileError, RuntimeError) as exc:
                        log.error("%s: read error after %.2f s of audio (%s); ending replay",
                                  self.path, sent / self.sample_rate, exc)
                        break
                    if len(data) == 0:
                        break
                    if not np.all(np.isfinite(data)):
                        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
                    if self.speed > 0:
                        # a block is due when its last sample would have been heard; pacing by audio
                        # position, not per block, so sleeps never accumulate drift
                        due = t0 + (sent + len(data)) / self.sample_rate / self.speed
                        wait = due - time.monotonic()
                        if wait > 0 and stop.wait(wait):
                            break
                    if not self.out.put(AudioBlock(data, self.sample_rate), stop):
                        break
                    sent += len(data)
        finally:
            log.info("input %s: replay ended after %.2f s of audio", self.path, sent / self.sample_rate)
            if not stop.is_set():  # stopped by a signal: no end-of-stream flush (no half gestures)
                self.out.put(AudioEnd(f"end of {self.path.name}"), stop)
