"""Microphone capture: a sounddevice InputStream whose callback only copies blocks into a bounded
queue. Inference, logging and publishing happen elsewhere (the detection thread).

The queue is shared with `file_source.FileSource`, so a replayed file takes exactly the path the
microphone does. A block carries `gap_before=True` when audio was lost before it (queue full,
input overflow, stream re-opened): the consumer then resets the detector so no event spans a gap.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("snap_mqtt.capture")


class AudioDeviceError(Exception):
    """No such input device, or it cannot capture as asked. The message names the device."""


class StreamLost(Exception):
    """A running input stream stopped delivering audio (unplugged, suspended, PortAudio error)."""


@dataclass(frozen=True)
class AudioBlock:
    samples: np.ndarray  # float32 [frames, channels] at sample_rate
    sample_rate: int
    gap_before: bool = False  # audio was lost just before this block: reset the detector
    gap_seconds: float = 0.0  # how much audio was lost, as far as known (keeps the stream clock)


@dataclass(frozen=True)
class AudioEnd:
    """No more audio will come (end of a replayed file)."""

    reason: str = "end of input"


class BlockQueue:
    """A bounded queue of AudioBlock/AudioEnd. `offer` never blocks (for the PortAudio callback):
    when full the block is dropped and counted, and the next block that fits is marked as
    following a gap. `put` blocks (for a file, which can wait)."""

    def __init__(self, maxsize: int = 64) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=maxsize)
        self._gap = False
        self._gap_seconds = 0.0
        self.dropped = 0  # blocks lost to a full queue
        self.overflows = 0  # input overflows reported by PortAudio

    def mark_gap(self, seconds: float = 0.0) -> None:
        self._gap = True
        self._gap_seconds += max(0.0, seconds)

    def offer(self, samples: np.ndarray, sample_rate: int) -> bool:
        block = AudioBlock(samples, sample_rate, gap_before=self._gap, gap_seconds=self._gap_seconds)
        try:
            self._q.put_nowait(block)
        except queue.Full:
            self.dropped += 1
            self._gap = True
            self._gap_seconds += len(samples) / sample_rate
            return False
        self._gap = False
        self._gap_seconds = 0.0
        return True

    def put(self, item: AudioBlock | AudioEnd, stop: threading.Event | None = None) -> bool:
        """Blocking put; gives up (False) once `stop` is set."""
        if isinstance(item, AudioBlock) and self._gap:
            item = AudioBlock(item.samples, item.sample_rate, gap_before=True, gap_seconds=self._gap_seconds)
            self._gap = False
            self._gap_seconds = 0.0
        while True:
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                if stop is not None and stop.is_set():
                    return False

    def get(self, timeout: float | None = None) -> AudioBlock | AudioEnd | None:
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    def qsize(self) -> int:
        return self._q.qsize()


# ---- devices -----------------------------------------------------------------------------------

def input_devices() -> list[dict]:
    """Input-capable devices as dicts (index, name, hostapi, max_input_channels, default_samplerate)."""
    import sounddevice as sd

    out = []
    apis = sd.query_hostapis()
    for d in sd.query_devices():
        if d["max_input_channels"] > 0:
            out.append({"index": d["index"], "name": d["name"], "hostapi": apis[d["hostapi"]]["name"],
                        "max_input_channels": d["max_input_channels"],
                        "default_samplerate": d["default_samplerate"]})
    return out


def resolve_device(spec: str | int | None) -> int | None:
    """Device index for an index or a (case-insensitive, exact or substring) name; None = default."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    devices = input_devices()
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        idx = int(spec)
        for d in devices:
            if d["index"] == idx:
                return idx
        raise AudioDeviceError(f"audio.device {idx}: no input device with that index "
                               f"(inputs: {_describe(devices)})")
    name = spec.strip().lower()
    exact = [d for d in devices if d["name"].lower() == name]
    if exact:
        return exact[0]["index"]
    partial = [d for d in devices if name in d["name"].lower()]
    if len(partial) == 1:
        return partial[0]["index"]
    if not partial:
        raise AudioDeviceError(f"audio.device {spec!r}: no input device with that name "
                               f"(inputs: {_describe(devices)})")
    raise AudioDeviceError(f"audio.device {spec!r} is ambiguous: matches {_describe(partial)}")


def _describe(devices: list[dict]) -> str:
    return ", ".join(f"{d['index']}: {d['name']!r}" for d in devices) or "none"


def choose_format(device: int | None, wanted_rate: int, channels: int | None,
                  configured_rate: int | None = None) -> tuple[int, int]:
    """(sample_rate, channels) to open: the configured rate, else the model's rate where the
    device supports it, else the device's default rate (the pipeline resamples)."""
    import sounddevice as sd

    try:
        info = sd.query_devices(device, "input")
    except (ValueError, sd.PortAudioError) as exc:
        which = "no default input device" if device is None else f"input device {device}"
        raise AudioDeviceError(f"{which}: {exc} (no microphone found? see `snap-mqtt devices`)") from None
    max_ch = int(info["max_input_channels"])
    ch = channels or 1
    if ch > max_ch:
        raise AudioDeviceError(f"audio.channels {ch}: device {info['name']!r} has only {max_ch} input channel(s)")
    label = f"device {info['name']!r}"
    if configured_rate:
        try:
            sd.check_input_settings(device, samplerate=configured_rate, channels=ch)
        except Exception as exc:  # sounddevice raises PortAudioError or ValueError
            raise AudioDeviceError(f"audio.sample_rate {configured_rate}: {label} cannot capture at it ({exc})") from None
        return configured_rate, ch
    # some USB microphones only capture in stereo: then take 2 channels (downmixed later)
    for n in dict.fromkeys((ch, min(2, max_ch))):
        for rate in (wanted_rate, int(info["default_samplerate"])):
            try:
                sd.check_input_settings(device, samplerate=rate, channels=n)
                return rate, n
            except Exception:
                continue
    raise AudioDeviceError(f"{label}: cannot capture {ch} channel(s) at {wanted_rate} Hz or its default rate")


def _reinit_portaudio() -> None:
    """PortAudio lists devices once at start; re-scan so a re-plugged USB microphone is found."""
    import sounddevice as sd

    try:
        sd._terminate()
        sd._initialize()
    except Exception as exc:  # a failed re-scan is retried on the next attempt
        log.debug("PortAudio re-scan failed: %s", exc)


# ---- the microphone source ---------------------------------------------------------------------------

class MicSource:
    """Captures from an input device into a BlockQueue until `stop` is set. A lost stream is
    reported through `on_state(False)`, re-opened (the device found again by name) with backoff,
    and reported up again with `on_state(True)` once audio flows."""

    def __init__(self, out: BlockQueue, *, device: str | int | None, wanted_rate: int,
                 channels: int | None = None, sample_rate: int | None = None,
                 block_seconds: float = 0.05, on_state: Callable[[bool], None] | None = None,
                 stall_seconds: float = 3.0, retry_max_delay: float = 10.0) -> None:
        self.out = out
        self.device = device
        self.wanted_rate = wanted_rate
        self.channels = channels
        self.sample_rate = sample_rate
        self.block_seconds = block_seconds
        self.on_state = on_state or (lambda up: None)
        self.stall_seconds = stall_seconds
        self.retry_max_delay = retry_max_delay
        self._last_block = 0.0
        self._lost_at: float | None = None  # when audio stopped flowing (for the gap length)
        self._blocks = 0
        self._state = ""
        self.opened_rate: int | None = None

    def _callback(self, indata, frames, time_info, status) -> None:
        # PortAudio's thread: copy and enqueue only; no logging, no inference
        if status.input_overflow:
            self.out.overflows += 1
            self.out.mark_gap()
        if self._lost_at is not None:  # first block after a lost stream: the gap is the wall time
            self.out.mark_gap(time.monotonic() - self._lost_at - frames / (self.opened_rate or self.wanted_rate))
            self._lost_at = None
        self.out.offer(indata.copy(), self.opened_rate or self.wanted_rate)
        self._last_block = time.monotonic()
        self._blocks += 1

    def _open(self):
        import sounddevice as sd

        device = resolve_device(self.device)
        rate, ch = choose_format(device, self.wanted_rate, self.channels, self.sample_rate)
        self.opened_rate = rate
        stream = sd.InputStream(device=device, samplerate=rate, channels=ch, dtype="float32",
                                blocksize=max(1, int(rate * self.block_seconds)), callback=self._callback)
        stream.start()
        name = sd.query_devices(device, "input")["name"]
        return stream, name, rate, ch

    def _log(self, state: str, level: int, msg: str, *args) -> None:
        if state != self._state:
            self._state = state
            log.log(level, msg, *args)

    def run(self, stop: threading.Event) -> None:
        import sounddevice as sd

        delay = 1.0
        up = False
        while not stop.is_set():
            stream = None
            try:
                stream, name, rate, ch = self._open()
                self._log("open", logging.INFO, "audio: capturing from %r at %d Hz, %d channel(s)", name, rate, ch)
                opened = time.monotonic()
                self._blocks = 0
                while not stop.is_set():
                    stop.wait(0.1)
                    if not stream.active:
                        raise StreamLost("the input stream stopped (device unplugged or PortAudio error)")
                    now = time.monotonic()
                    if self._blocks == 0:
                        if now - opened > max(self.stall_seconds, 2.0):
                            raise StreamLost(f"no audio within {max(self.stall_seconds, 2.0):.0f} s of opening")
                        continue
                    if not up:
                        up = True
                        delay = 1.0
                        self._log("up", logging.INFO, "audio: input is up")
                        self.on_state(True)
                    if now - self._last_block > self.stall_seconds:
                        raise StreamLost(f"no audio for {self.stall_seconds:.0f} s")
            except (StreamLost, AudioDeviceError, sd.PortAudioError) as exc:
                self._log(f"down:{type(exc).__name__}", logging.WARNING,
                          "audio: input lost or unavailable (%s); retrying until it returns", exc)
            except Exception as exc:  # an unexpected failure must not end capture for good
                log.exception("audio: unexpected capture error: %s", exc)
            finally:
                if stream is not None:
                    try:
                        stream.abort(ignore_errors=True)
                        stream.close(ignore_errors=True)
                    except Exception:
                        pass
            if up:
                up = False
                self.on_state(False)
            if self._lost_at is None:
                self._lost_at = self._last_block or time.monotonic()
            self.out.mark_gap()
            if stop.is_set():
                break
            stop.wait(delay)
            delay = min(delay * 2, self.retry_max_delay)
            if not stop.is_set():
                _reinit_portaudio()  # re-scan devices: a re-plugged microphone gets a new entry
        if up:
            self.on_state(False)
