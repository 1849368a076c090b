"""The listener runtime: audio in, events out, until told to stop.

One named thread per part, each "work; on error log, sleep, retry":
  audio       MicSource (sounddevice) or FileSource (a replayed file) -> BlockQueue
  detect      BlockQueue -> SnapPipeline -> MqttLink (and opt-in detection clips)
  model-watch reloads the model on SIGHUP or when the file changes (no restart)
  (paho)      MqttLink's own network thread: connect, reconnect, commands
The main thread only waits for a signal or the end of a replayed file. SIGTERM/SIGINT: publish
`offline`, flush, exit 0 within 2 s.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from snap_mqtt.capture import AudioBlock, AudioEnd, BlockQueue, MicSource
from snap_mqtt.events import GestureEvent, SnapEvent
from snap_mqtt.model_file import ModelFileError, SnapModel, load_model
from snap_mqtt.mqtt_client import MqttLink, MqttOptions
from snap_mqtt.topics import Topics

log = logging.getLogger("snap_mqtt.listener")

CLIP_BEFORE_S = 0.10  # a saved detection clip: 250 ms around the onset, like the training clips
CLIP_AFTER_S = 0.15
ERROR_PAUSE_S = 0.5  # after an unexpected error in the detection loop


def mqtt_options(settings: Any) -> MqttOptions:
    m = settings.mqtt
    return MqttOptions(
        host=m.host, port=m.port, username=m.username,
        password=m.password.get_secret_value() if m.password is not None else None,
        client_id=settings.client_id, keepalive=m.keepalive, tls=m.tls,
        ca_certs=str(m.tls_ca) if m.tls_ca else None, certfile=str(m.tls_cert) if m.tls_cert else None,
        keyfile=str(m.tls_key) if m.tls_key else None, tls_insecure=m.tls_insecure,
        reconnect_max_delay=int(round(m.reconnect_max_delay)),
    )


@dataclass
class _PendingClip:
    onset: float
    confidence: float
    timestamp: str


class Listener:
    def __init__(self, settings: Any, model: SnapModel, *, input_file: str | Path | None = None,
                 speed: float = 1.0, sw_version: str = "") -> None:
        from snap_mqtt import __version__

        self.settings = settings
        self.model = model
        self.model_path = Path(model.path)
        self.input_file = Path(input_file) if input_file else None
        self.speed = speed
        self.topics = Topics(settings.node_id, settings.base_topic, settings.discovery_prefix)
        self.queue = BlockQueue(maxsize=max(16, int(2.0 / settings.audio.block_seconds)))
        self.stop_event = threading.Event()
        self.done = threading.Event()
        self.reload_request = threading.Event()
        self._paused = False
        self._threshold = float(settings.threshold if settings.threshold is not None else model.metadata.threshold)
        # the threshold follows the model's own until set in the settings or from Home Assistant
        self._threshold_source = "config" if settings.threshold is not None else "model"
        self._controls_changed = threading.Event()
        self._next_model: SnapModel | None = None
        self._model_lock = threading.Lock()
        self.pipeline = None  # built on the first block, when the input's rate is known
        self._clips: list[_PendingClip] = []
        self.events_published = 0
        self.link = MqttLink(mqtt_options(settings), self.topics, sw_version or __version__,
                             max_event_age=settings.max_event_age, on_pause=self._on_pause,
                             on_threshold=self._on_threshold, controls=self._controls)
        if self.input_file is not None:
            from snap_mqtt.file_source import FileSource

            self.source: Any = FileSource(self.input_file, self.queue, speed=speed,
                                          block_seconds=settings.audio.block_seconds,
                                          on_state=self.link.set_audio_up)
        else:
            a = settings.audio
            self.source = MicSource(self.queue, device=a.device, wanted_rate=model.metadata.sample_rate,
                                    channels=a.channels, sample_rate=a.sample_rate, block_seconds=a.block_seconds,
                                    on_state=self.link.set_audio_up)
        self._threads: list[threading.Thread] = []
        self._signalled = False
        self._errors = 0
        self._last_error_log = -1e9

    # ---- controls (called from paho's thread) ------------------------------------------------------
    def _controls(self) -> tuple[bool, float, str]:
        return self._paused, self._threshold, self._threshold_source

    def _on_pause(self, paused: bool) -> None:
        if paused != self._paused:
            log.info("detection %s", "paused" if paused else "resumed")
        self._paused = paused
        self._controls_changed.set()

    def _on_threshold(self, value: float) -> None:
        if value != self._threshold:
            log.info("threshold set to %.2f", value)
        self._threshold = value
        self._threshold_source = "user"
        self._controls_changed.set()

    # ---- lifecycle --------------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        def stop(signum, frame):
            log.info("received %s: stopping", signal.Signals(signum).name)
            self._signalled = True
            self.stop_event.set()

        def hup(signum, frame):
            log.info("received SIGHUP: reloading the model")
            self.reload_request.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)

    def run(self) -> int:
        src = f"file {self.input_file} (speed {self.speed:g}x)" if self.input_file else "the microphone"
        log.info("listening on %s as node %r with model %s (threshold %.2f)", src, self.topics.node_id,
                 self.model_path, self._threshold)
        self.link.start()
        for name, target in (("audio", self._audio_loop), ("detect", self._detect_loop),
                             ("model-watch", self._watch_loop)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        while not self.stop_event.is_set() and not self.done.is_set():
            self.stop_event.wait(0.1)
        return self.shutdown()

    def shutdown(self) -> int:
        self.stop_event.set()
        deadline = time.monotonic() + 0.8
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self.done.is_set() and not self._signalled:
            # the replayed file ended: give queued events a moment to reach a broker that is up
            self.link.flush(timeout=min(3.0, self.settings.max_event_age))
        self.link.stop(timeout=0.8)
        s = self.link.stats
        log.info("stopped: %d event(s) published (%d of them queued while not connected), %d dropped as older than %.1f s, "
                 "%d audio block(s) dropped, %d input overflow(s)", s.published, s.delivered_late, s.dropped_stale,
                 self.settings.max_event_age, self.queue.dropped, self.queue.overflows)
        return 0

    # ---- threads ----------------------------------------------------------------------------------------------
    def _audio_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.source.run(self.stop_event)
                return
            except Exception:  # MicSource retries by itself; anything else is logged and retried
                if self.input_file is not None:
                    log.exception("replay of %s failed", self.input_file)
                    self.done.set()  # a file is not replayed twice
                    return
                log.exception("audio thread failed; restarting it")
                self.queue.mark_gap()
                self.stop_event.wait(1.0)

    def _detect_loop(self) -> None:
        while not self.stop_event.is_set():
            item = self.queue.get(timeout=0.1)
            if item is None:
                continue
            try:
                if isinstance(item, AudioEnd):
                    if self.pipeline is not None and not self.stop_event.is_set():
                        self._publish(self.pipeline.flush())
                    log.info("%s", item.reason)
                    self.done.set()
                    return
                self._process(item)
            except Exception:  # one bad block or publish must not end detection
                self._errors += 1
                now = time.monotonic()
                if now - self._last_error_log >= 60.0:  # a traceback, then at most one line a minute
                    self._last_error_log = now
                    log.exception("error while processing audio (%d so far); resetting the detector and "
                                  "going on", self._errors)
                if self.pipeline is not None:
                    try:
                        self.pipeline.reset()
                    except Exception:
                        self.pipeline = None
                self.stop_event.wait(ERROR_PAUSE_S)

    def _process(self, block: AudioBlock) -> None:
        from snap_mqtt.pipeline import SnapPipeline

        channels = block.samples.shape[1] if block.samples.ndim == 2 else 1
        p = self.pipeline
        if p is None or p.input_rate != block.sample_rate or p.channels != channels:
            if p is not None:
                self._publish(p.flush())
                log.info("input format changed to %d Hz, %d channel(s)", block.sample_rate, channels)
            start = p.now if p is not None else 0.0
            p = self.pipeline = SnapPipeline(self.model, self.settings, block.sample_rate, channels)
            if start:
                p.reset(start)  # keep the stream clock going
            p.set_threshold(self._threshold)
        if self._next_model is not None:
            with self._model_lock:
                model, self._next_model = self._next_model, None
            p.reload(model)
            self.model = model
            if self._threshold_source == "model":
                self._threshold = model.metadata.threshold
                self.link.publish_controls()
            p.set_threshold(self._threshold)
        if self._controls_changed.is_set():
            self._controls_changed.clear()
            p.paused = self._paused
            if p.threshold != self._threshold:
                p.set_threshold(self._threshold)
        if block.gap_before:
            log.warning("audio gap of %.2f s (%d block(s) dropped so far, %d input overflow(s)): detector reset",
                        block.gap_seconds, self.queue.dropped, self.queue.overflows)
            self._publish(p.reset(block.gap_seconds))
        self._publish(p.process(block.samples))
        if self._clips:
            self._save_due_clips()

    def _publish(self, events: list) -> None:
        for ev in events:
            if self._paused:
                continue  # paused: nothing leaves, even a gesture that closes now
            if isinstance(ev, SnapEvent):
                self.link.publish_event(self.topics.snap, ev.payload())
                if self.settings.capture_dir is not None:
                    self._clips.append(_PendingClip(ev.time, ev.confidence, ev.timestamp))
            elif isinstance(ev, GestureEvent):
                self.link.publish_event(self.topics.gesture, ev.payload())
            else:
                continue
            self.events_published += 1
            log.info("%s %s", "snap" if isinstance(ev, SnapEvent) else "gesture", ev.payload())

    def _save_due_clips(self) -> None:
        """Save the audio around each detection once it is all heard (opt-in `capture_dir`)."""
        p = self.pipeline
        due = [c for c in self._clips if p.now >= c.onset + CLIP_AFTER_S]
        if not due:
            return
        self._clips = [c for c in self._clips if c not in due]
        folder = Path(self.settings.capture_dir)
        for clip in due:
            try:
                audio, _ = p.recent_audio(clip.onset - CLIP_BEFORE_S, clip.onset + CLIP_AFTER_S)
                if len(audio) == 0:
                    continue
                folder.mkdir(parents=True, exist_ok=True)
                path = _unique_path(folder, clip)
                from snap_mqtt.audio_io import write_audio_atomic

                write_audio_atomic(path, audio, p.sample_rate)
                log.info("saved detection clip %s", path)
            except OSError as exc:  # a full disk must not stop detection
                log.error("could not save a detection clip in %s: %s", folder, exc)

    def _watch_loop(self) -> None:
        last = _stat(self.model_path)
        while not self.stop_event.wait(1.0 if not self.reload_request.is_set() else 0.0):
            try:
                now = _stat(self.model_path)
                if self.reload_request.is_set() or (now is not None and now != last):
                    self.reload_request.clear()
                    last = now
                    self._reload()
            except Exception:
                log.exception("model watcher failed; going on")

    def _reload(self) -> None:
        try:
            model = load_model(self.model_path)
        except ModelFileError as exc:
            log.error("model reload failed, keeping the current model: %s", exc)
            return
        with self._model_lock:
            self._next_model = model
        m = model.metadata
        log.info("model reloaded from %s (trainer %s, %d Hz, threshold %.2f)", self.model_path,
                 m.trainer_version, m.sample_rate, m.threshold)


def _stat(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _unique_path(folder: Path, clip: _PendingClip) -> Path:
    """A new file name, never an existing one: nothing is ever overwritten."""
    try:
        stamp = datetime.fromisoformat(clip.timestamp).strftime("%Y%m%dT%H%M%S_%f")[:-3]
    except (ValueError, TypeError):
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S_%f")[:-3]
    base = f"detection_{stamp}_p{int(round(clip.confidence * 100)):02d}"
    path = folder / f"{base}.flac"
    n = 1
    while path.exists():
        path = folder / f"{base}_{n}.flac"
        n += 1
    return path
