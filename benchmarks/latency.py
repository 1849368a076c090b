"""End-to-end latency, live: a recording with known snaps is played in real time into a PulseAudio
null sink; `snap-mqtt listen` (a real subprocess) captures the sink's monitor through sounddevice
and publishes to a real Mosquitto; a subscriber here stamps each message's arrival.

When each sample reaches the sink is taken from PortAudio's output timing (the callback's
outputBufferDacTime), so the playback's start-up delay is not counted as the listener's latency.
The listener's stream clock differs from the recording's by a constant, found from the payloads'
`time` fields; messages are then matched to true onsets one-to-one within 150 ms.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NODE = "bench"
LEAD_IN_S = 1.0


@dataclass
class Truth:
    audio: np.ndarray  # mono float32 at `rate`
    rate: int
    snaps: list[float]
    gestures: list[list[float]]  # onsets of each gesture's snaps


def demo_truth(repeats: int = 3) -> Truth:
    from snap_mqtt.audio_io import read_audio

    meta = json.loads((ROOT / "demo" / "demo-scene.json").read_text())
    a = read_audio(ROOT / "demo" / "demo-scene.flac")
    n = len(a.samples) / a.sample_rate
    snaps, gestures = [], []
    groups = [[t for t in meta["snaps"] if g["time"] <= t < g["time"] + 1.5] for g in meta["gestures"]]
    for k in range(repeats):
        snaps += [t + k * n for t in meta["snaps"]]
        gestures += [[t + k * n for t in g] for g in groups]
    return Truth(np.tile(a.samples, repeats), a.sample_rate, snaps, gestures)


def scenes_truth(scenes_dir: Path, count: int, rate: int = 16000) -> Truth:
    from snap_mqtt.audio_io import read_audio

    index = json.loads((scenes_dir / "scenes.json").read_text())
    chosen = [s for s in index["scenes"] if s["sample_rate"] == rate][:count]
    parts, snaps, gestures, t0 = [], [], [], 0.0
    for s in chosen:
        x = read_audio(scenes_dir / s["file"]).samples
        parts.append(x)
        snaps += [p["time"] + t0 for p in s["snaps"]]
        gestures += [[t + t0 for t in g["snaps"]] for g in s["gestures"]]
        t0 += len(x) / rate
    return Truth(np.concatenate(parts), rate, snaps, gestures)


@dataclass
class Arrivals:
    msgs: list[tuple[float, str, dict]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, client, userdata, msg) -> None:
        t = time.monotonic()
        try:
            payload = json.loads(msg.payload.decode())
        except ValueError:
            payload = {"raw": msg.payload.decode(errors="replace")}
        with self.lock:
            self.msgs.append((t, msg.topic, payload))

    def get(self, suffix: str) -> list[tuple[float, dict]]:
        with self.lock:
            return [(t, p) for t, topic, p in self.msgs if topic.endswith(suffix)]


def _proc_stats(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    vals = {line.split(":")[0]: line.split(":")[1].strip() for line in status.splitlines() if ":" in line}
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    mb = lambda k: int(vals[k].split()[0]) / 1024 if k in vals else None  # noqa: E731
    return {"vm_hwm_mb": mb("VmHWM"), "vm_rss_mb": mb("VmRSS"), "rss_anon_mb": mb("RssAnon"), "rss_file_mb": mb("RssFile"),
            "cpu_seconds": (int(stat[11]) + int(stat[12])) / tck}


def _play(x: np.ndarray, rate: int) -> tuple[float, int]:
    """Play x into the default sink in real time. Returns (monotonic time at which sample 0
    reached the sink, output underflows)."""
    import sounddevice as sd

    stamps: list[tuple[int, float]] = []
    pos = [0]
    under = [0]
    done = threading.Event()
    block = 1024  # the player's own timing does not matter (PortAudio says when samples play): avoid underflows

    def cb(outdata, frames, t, status):
        if status.output_underflow:
            under[0] += 1
        now = time.monotonic()
        delay = (t.outputBufferDacTime - t.currentTime) if t.outputBufferDacTime > 0 else 0.0
        stamps.append((pos[0], now + max(0.0, delay)))
        chunk = x[pos[0]:pos[0] + frames]
        outdata[: len(chunk), 0] = chunk
        outdata[len(chunk):, 0] = 0
        pos[0] += frames
        if pos[0] >= len(x):
            raise sd.CallbackStop

    with sd.OutputStream(samplerate=rate, channels=1, dtype="float32", blocksize=block, callback=cb,
                         finished_callback=done.set, latency="high"):
        done.wait(len(x) / rate + 30)
    # each callback says when its first sample plays: sample 0's time from all of them (median)
    t0 = float(np.median([w - k / rate for k, w in stamps]))
    return t0, under[0]


def _shift(arr: list[tuple[float, dict]], wall_onsets: np.ndarray, onsets: np.ndarray) -> float | None:
    """Constant between the listener's stream clock (payload 'time') and the recording's time."""
    cands = []
    for a, p in arr:
        for w, t in zip(wall_onsets, onsets):
            if 0.0 <= a - w <= 1.0:
                cands.append(float(p["time"]) - t)
    if not cands:
        return None
    cands = np.asarray(cands)
    votes = [np.sum(np.abs(cands - c) <= 0.03) for c in cands]
    best = cands[int(np.argmax(votes))]
    return float(np.median(cands[np.abs(cands - best) <= 0.03]))


def _pct(v: list[float]) -> dict:
    if not v:
        return {"n": 0}
    a = np.asarray(v) * 1000
    return {"n": len(v), "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "max_ms": float(a.max()), "min_ms": float(a.min())}


def run_latency(model: Path, truth: Truth, log_path: Path) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from services import Broker, start_pulse  # noqa: E402  (real Mosquitto and PulseAudio)

    import paho.mqtt.client as mqtt

    from trainer.metrics import match_events

    pulse = start_pulse()  # before sounddevice is imported: PortAudio must see this PulseAudio
    if pulse is None:
        raise RuntimeError("PulseAudio is not installed (scripts/setup.sh)")
    broker = Broker.create().start()
    arrivals = Arrivals()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub")
    sub.on_message = arrivals.on_message
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe(f"snap_mqtt/{NODE}/#", qos=1)
    sub.loop_start()
    exe = ROOT / ".venv" / "bin" / "snap-mqtt"
    cmd = [str(exe) if exe.exists() else "snap-mqtt", "listen", "--model", str(model), "--host", "127.0.0.1",
           "--port", str(broker.port), "--node-id", NODE]
    env = {**pulse.env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logf = open(log_path, "w")
    proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not any(p.get("raw") == "online" for _, p in arrivals.get("/availability")):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"listener did not come online (see {log_path})")
            time.sleep(0.1)
        time.sleep(2.0)  # let the capture stream settle
        idle = _proc_stats(proc.pid)
        x = np.concatenate([np.zeros(int(LEAD_IN_S * truth.rate), np.float32), truth.audio])
        load0 = os.getloadavg()[0]
        t0, underflows = _play(x, truth.rate)
        time.sleep(3.0)  # the last gesture closes after its gap
        busy = _proc_stats(proc.pid)
        load1 = os.getloadavg()[0]
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        logf.close()
        sub.loop_stop()
        sub.disconnect()
        broker.stop()
        pulse.stop()
    onsets = np.asarray(truth.snaps) + LEAD_IN_S
    wall = t0 + onsets
    snaps = arrivals.get("/snap")
    gestures = arrivals.get("/gesture")
    shift = _shift(snaps, wall, onsets)
    snap_lat, gest_lat, gest_lat_full = [], [], []
    counts_ok = 0
    if shift is not None:
        m = match_events(onsets, [float(p["time"]) - shift for _, p in snaps])
        snap_lat = [snaps[j][0] - wall[i] for i, j in m.pairs]
        g_first = np.asarray([g[0] for g in truth.gestures]) + LEAD_IN_S
        gm = match_events(g_first, [float(p["time"]) - shift for _, p in gestures])
        for i, j in gm.pairs:
            g = truth.gestures[i]
            a, p = gestures[j]
            if int(p.get("count", 0)) == len(g):  # a wrong count's timing says nothing about the gap
                counts_ok += 1
                gest_lat.append(a - (t0 + g[-1] + LEAD_IN_S))
                if len(g) == 3:
                    gest_lat_full.append(a - (t0 + g[-1] + LEAD_IN_S))
    played = len(x) / truth.rate
    return {
        "audio_seconds": played, "true_snaps": len(onsets), "snap_messages": len(snaps),
        "matched_snaps": len(snap_lat), "true_gestures": len(truth.gestures), "gesture_messages": len(gestures),
        "gestures_with_right_count": counts_ok, "clock_shift_s": shift, "playback_underflows": underflows,
        "snap_latency": _pct(snap_lat),
        "gesture_latency_from_last_snap": _pct(gest_lat),  # right-count gestures only
        "triple_latency_from_last_snap": _pct(gest_lat_full),
        "listener_peak_rss_mb": busy["vm_hwm_mb"],
        "listener_rss_mb_idle": idle["vm_rss_mb"],
        "listener_rss_anon_mb": busy["rss_anon_mb"], "listener_rss_file_mb": busy["rss_file_mb"],
        "listener_cpu_seconds_per_audio_second": (busy["cpu_seconds"] - idle["cpu_seconds"]) / (played + 3.0),
        "loadavg_1min": [load0, load1],
    }
