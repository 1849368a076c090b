"""Helpers for the listener tests: real TorchScript model files, a paho subscriber that records
what reaches the broker, and the listener as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from snap_mqtt.model_file import ModelMetadata
from snap_mqtt.model_file import save_model as _save_model


def save_model(module, meta, path):
    with warnings.catch_warnings():  # torch 2.11 calls TorchScript deprecated; it is the model format
        warnings.simplefilter("ignore", DeprecationWarning)
        return _save_model(module, meta, path)


def script(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(module)

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo" / "demo-scene.flac"
DEMO_TRUTH = json.loads((ROOT / "demo" / "demo-scene.json").read_text())


class EnergySnapModel(torch.nn.Module):
    """A transparent stand-in for a trained model, obeying the same contract: it says "snap" when
    the loudest short frame of high-passed energy inside the onset region beats everything before
    the region by `margin_db`. Deterministic, so the listener tests do not depend on training."""

    def __init__(self, lo: int, hi: int, frame: int = 80, margin_db: float = 15.0, scale: float = 1.0):
        super().__init__()
        self.lo = lo
        self.hi = hi
        self.frame = frame
        self.margin_db = margin_db
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x[:, 1:] - x[:, :-1]
        e = torch.nn.functional.avg_pool1d((d * d).unsqueeze(1), self.frame, self.frame // 2).squeeze(1)
        step = self.frame // 2
        lo = self.lo // step
        hi = min(e.shape[1], (self.hi + 160) // step)
        # the floor keeps noise starting out of digital silence (a stream opening) from looking like a snap
        pre = e[:, :lo].amax(dim=1) + 1e-5
        region = e[:, lo:hi].amax(dim=1) + 1e-5
        ratio_db = 10.0 * torch.log10(region / pre)
        return torch.sigmoid((ratio_db - self.margin_db) * self.scale)


class NeverModel(torch.nn.Module):
    """A valid snap-mqtt model that never fires (to see a model swap take effect)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0])


def metadata(threshold: float = 0.5, version: str = "test-energy") -> ModelMetadata:
    return ModelMetadata(sample_rate=16000, window_samples=4000, hop_samples=320, threshold=threshold,
                         trainer_version=version, onset_min_samples=1440, onset_max_samples=3360,
                         architecture="energy ratio (test stand-in)")


def make_energy_model(path: Path, threshold: float = 0.5) -> Path:
    module = script(EnergySnapModel(1440, 3360))
    return save_model(module, metadata(threshold), path)


class GlitchyModel(torch.nn.Module):
    """The energy model, except that it fails (raises) on any window with a sample above 0.9:
    a crash in the detection part, produced for real inside the model."""

    def __init__(self, inner: EnergySnapModel):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.abs().amax() > 0.9):
            raise RuntimeError("glitch: sample above 0.9")
        return self.inner(x)


def make_glitchy_model(path: Path) -> Path:
    return save_model(script(GlitchyModel(EnergySnapModel(1440, 3360))), metadata(version="test-glitchy"), path)


def make_never_model(path: Path) -> Path:
    return save_model(script(NeverModel()), metadata(version="test-never"), path)


class ScaledModel(torch.nn.Module):
    """The energy model's answer times `gain`: with gain 0.7 it fires at threshold 0.5 but never
    at 0.8, which makes a change of the sensitivity visible in the events."""

    def __init__(self, inner: EnergySnapModel, gain: float):
        super().__init__()
        self.inner = inner
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self.gain


def make_scaled_model(path: Path, gain: float = 0.7) -> Path:
    module = script(ScaledModel(EnergySnapModel(1440, 3360), gain))
    return save_model(module, metadata(version="test-scaled"), path)


def make_scene(path: Path, snap_times: list[float], seconds: float, rate: int = 16000,
               noise_db: float = -60.0, seed: int = 0, glitch_at: float | None = None,
               channels: int = 1) -> Path:
    """A recording with committed snap fixtures placed so their onsets fall at `snap_times`, in
    quiet noise: the energy stand-in model hears exactly those snaps."""
    import numpy as np

    from snap_mqtt.audio_io import read_audio, write_audio_atomic
    from snap_mqtt.onset import snap_onset

    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 10 ** (noise_db / 20), int(seconds * rate)).astype(np.float32)
    clips = []
    for f in sorted((ROOT / "tests" / "fixtures" / "audio" / "snap").glob("*.flac")):
        a = read_audio(f, rate).samples
        o = snap_onset(a, rate)
        if o is not None and o >= int(0.03 * rate) and len(a) - o >= int(0.1 * rate):
            clips.append((a, o))
    for i, t in enumerate(snap_times):
        a, o = clips[i % len(clips)]
        seg = a[o - int(0.03 * rate):]  # from 30 ms before the onset: no other transient in front
        seg = seg * (0.5 / max(1e-6, float(np.abs(seg).max())))
        start = int(round(t * rate)) - int(0.03 * rate)
        end = min(len(x), start + len(seg))
        ramp = np.linspace(0, 1, int(0.005 * rate), dtype=np.float32)
        seg = seg.copy()
        seg[:len(ramp)] *= ramp
        x[start:end] += seg[: end - start]
    if glitch_at is not None:  # 50 ms of near full-scale noise
        a = int(glitch_at * rate)
        x[a:a + int(0.05 * rate)] = rng.uniform(-0.95, 0.95, int(0.05 * rate)).astype(np.float32)
    if channels > 1:  # the same sound on every channel, a little quieter on the others
        x = np.stack([x] + [0.8 * x] * (channels - 1), axis=1)
    return write_audio_atomic(path, x, rate)


# ---- a subscriber that records what reaches the broker -------------------------------------------

@dataclass
class Msg:
    topic: str
    payload: str
    retain: bool
    at: float  # time.monotonic() when received
    wall: float = 0.0  # time.time() when received

    def json(self) -> dict:
        return json.loads(self.payload)


class Recorder:
    """A real paho client subscribed to `topics`; `wait_for(pred)` polls what has arrived."""

    def __init__(self, port: int, topics: list[str], client_id: str = "test-recorder"):
        import paho.mqtt.client as mqtt

        self.messages: list[Msg] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"{client_id}-{os.getpid()}-{time.monotonic_ns()}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self._topics = topics
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in self._topics])
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise TimeoutError("recorder did not subscribe")

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append(Msg(msg.topic, msg.payload.decode("utf-8", "replace"), bool(msg.retain),
                                     time.monotonic(), time.time()))

    def snapshot(self) -> list[Msg]:
        with self._lock:
            return list(self.messages)

    def on(self, topic: str, since: float = 0.0) -> list[Msg]:
        return [m for m in self.snapshot() if m.topic == topic and m.at >= since]

    def wait_for(self, pred, timeout: float = 20.0, what: str = "a condition") -> list[Msg]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = pred(self.snapshot())
            if got:
                return got
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; got "
                             f"{[(m.topic, m.payload[:60]) for m in self.snapshot()][-15:]}")

    def wait_payload(self, topic: str, payload: str, since: float = 0.0, timeout: float = 20.0) -> Msg:
        return self.wait_for(lambda ms: [m for m in ms if m.topic == topic and m.payload == payload
                                         and m.at >= since], timeout, f"{payload!r} on {topic}")[0]

    def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(port: int, topics: list[str], settle: float = 0.5) -> dict[str, str]:
    """What a newcomer gets on subscribing: the retained messages under `topics`."""
    r = Recorder(port, topics, client_id="test-retained")
    time.sleep(settle)
    r.close()
    return {m.topic: m.payload for m in r.snapshot() if m.retain}


# ---- the listener as a real process ---------------------------------------------------------------------

class ListenerProc:
    """`python -m snap_mqtt.cli listen ...` with its own environment; log in `self.log_path`."""

    def __init__(self, args: list[str], workdir: Path, env: dict[str, str] | None = None):
        self.log_path = workdir / f"listener-{time.monotonic_ns()}.log"
        e = {**os.environ, **(env or {})}
        e.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
        # no stray settings from the environment or a .env in the caller's folder
        for k in list(e):
            if k.startswith("SNAP_") and k not in (env or {}):
                del e[k]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "snap_mqtt.cli", "listen", *args],
                                     cwd=workdir, env=e, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"listener still running after {timeout} s; log:\n{self.log[-3000:]}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def event_times(msgs: list[Msg]) -> list[float]:
    return [m.json()["time"] for m in msgs]


def close_to(got: list[float], want: list[float], tol: float = 0.05) -> bool:
    return len(got) == len(want) and all(abs(g - w) <= tol for g, w in zip(sorted(got), sorted(want)))


# ---- a TCP forwarder: lets a test cut the listener's network without touching the broker ----------

class Proxy:
    """Forwards 127.0.0.1:`port` to the broker. `block()` closes the listening socket and every
    forwarded connection (the listener sees a dropped network, then connection refused);
    `unblock()` listens again on the same port. Real sockets throughout."""

    def __init__(self, target_port: int):
        import socket

        from services import free_port

        self._socket = socket
        self.target = target_port
        self.port = free_port()
        self._server = None
        self._conns: list = []
        self._lock = threading.Lock()

    def unblock(self) -> "Proxy":
        s = self._socket.socket()
        s.setsockopt(self._socket.SOL_SOCKET, self._socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(8)
        self._server = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()
        return self

    def block(self) -> None:
        s, self._server = self._server, None
        if s is not None:
            try:  # wakes the thread blocked in accept(); close() alone leaves the port listening
                s.shutdown(self._socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(self._socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self, server) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = self._socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass


def age_on_arrival(m: Msg) -> float:
    """Seconds between an event's detection (its ISO timestamp) and its arrival."""
    from datetime import datetime

    return m.wall - datetime.fromisoformat(m.json()["timestamp"]).timestamp()
