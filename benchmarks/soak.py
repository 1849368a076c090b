"""Soak: `snap-mqtt listen --input` over an hour (or more) of audio with snaps at known times,
replayed faster than real time (`--speed`), publishing to a real Mosquitto.

Figures printed (and written as JSON): the listener's RSS sampled through the run (flat within
10 % after warm-up?), every expected gesture and snap published?, events lost between the
detector and the broker (listen's messages against `snap-mqtt detect` on the same file, which runs
the same pipeline offline), false events, throughput and CPU.

The soak recording is built block by block and never held in memory: evaluation-part backgrounds
of ../shared/data (keyboards, dishes, music, speech, exercise bike; never trained on) looped,
with held-out test-part snap clips mixed in as single/double/triple gestures every `--every`
seconds. Without ../shared/data it falls back to the committed fixtures.

    .venv/bin/python -m benchmarks.soak [--minutes 60] [--speed 40] [--every 20] [--out FILE]
"""

from __future__ import annotations

import argparse
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
RATE = 16000
NODE = "soak"
MATCH_S = 0.05  # an event's onset time against the known onset


# ---- the recording ----------------------------------------------------------------------------------

def _sources(data: Path | None) -> tuple[list[Path], list[Path], str]:
    """(backgrounds, snap clips, description): held-out parts only."""
    from trainer.splits import background_split, split_of

    if data is not None and (data / "snap").is_dir() and (data / "background").is_dir():
        bgs = sorted(p for p in (data / "background").rglob("*.flac")
                     if background_split(str(p.relative_to(data / "background"))) == "eval")
        snaps = sorted(p for p in (data / "snap").glob("*.flac") if split_of(p.name) == "test")
        return bgs, snaps, f"{data}: {len(bgs)} evaluation backgrounds, {len(snaps)} test-part snap clips"
    fx = ROOT / "tests" / "fixtures" / "audio"
    bgs = sorted((fx / "background").glob("*.flac"))
    snaps = sorted(p for p in (fx / "snap").glob("*.flac") if split_of(p.name) == "test")
    return bgs, snaps, f"committed fixtures: {len(bgs)} backgrounds, {len(snaps)} test-part snap clips"


@dataclass
class SoakTruth:
    seconds: float
    snaps: list[float] = field(default_factory=list)
    gestures: list[tuple[float, int]] = field(default_factory=list)  # (first onset, count)


def build_recording(path: Path, minutes: float, every: float, data: Path | None, seed: int = 0,
                    rate: int = RATE, channels: int = 1) -> tuple[SoakTruth, str]:
    """Write the soak recording to `path` (FLAC, `rate` Hz, `channels`) block by block; return the
    truth. Mixed at 16 kHz, then streamed through the listener's own resampler (no block edges)."""
    import soundfile as sf

    from snap_mqtt.audio_io import AudioFileError, read_audio
    from snap_mqtt.onset import snap_onset
    from snap_mqtt.resample import StreamingResampler

    rs = StreamingResampler(RATE, rate)
    gains = np.array([1.0, 0.7, 0.5, 0.85][:channels], dtype=np.float32)

    def emit(out, y: np.ndarray) -> None:
        y = rs.process(y) if rate != RATE else y
        out.write(np.clip(y[:, None] * gains[None, :], -1, 1) if channels > 1 else y)

    rng = np.random.default_rng(seed)
    bgs, snap_files, desc = _sources(data)
    clips: list[tuple[np.ndarray, int]] = []
    for p in snap_files:
        try:
            x = read_audio(p, RATE).samples
        except AudioFileError:
            continue
        o = snap_onset(x, RATE)
        if o is not None:
            clips.append((x / (np.max(np.abs(x)) + 1e-9), o))
    if not clips or not bgs:
        raise SystemExit(f"soak: no snap clips or backgrounds in {desc}")

    total = int(minutes * 60 * RATE)
    seg = int(every * RATE)
    truth = SoakTruth(seconds=total / RATE)
    bg_order = list(rng.permutation(len(bgs)))
    bg_i, bg, bg_pos = 0, np.zeros(0, np.float32), 0
    counts = [1, 2, 3]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    with sf.SoundFile(str(tmp), "w", samplerate=rate, channels=channels, subtype="PCM_16", format="FLAC") as out:
        start = 0
        k = 0
        while start < total:
            n = min(seg, total - start)
            block = np.zeros(n + RATE, np.float32)  # room for a clip tail (gestures sit mid-segment)
            filled = 0
            while filled < n:  # background: the next eval recordings in turn, at -35..-25 dBFS RMS
                if bg_pos >= len(bg):
                    p = bgs[bg_order[bg_i % len(bgs)]]
                    bg_i += 1
                    try:
                        bg = read_audio(p, RATE).samples
                    except AudioFileError:
                        bg = np.zeros(0, np.float32)
                    rms = float(np.sqrt(np.mean(bg ** 2))) if len(bg) else 0.0
                    if rms > 0:
                        bg = bg * (10 ** (rng.uniform(-35, -25) / 20) / rms)
                    bg_pos = 0
                    if len(bg) == 0:
                        continue
                take = min(n - filled, len(bg) - bg_pos)
                block[filled:filled + take] = bg[bg_pos:bg_pos + take]
                filled += take
                bg_pos += take
            if start + n >= total:  # the last segment holds no gesture: its gap could not close
                emit(out, block[:n])
                break
            count = counts[k % 3]
            k += 1
            t0 = rng.uniform(0.3, 0.5) * every  # gesture start within the segment
            onsets = [t0]
            for _ in range(count - 1):
                onsets.append(onsets[-1] + rng.uniform(0.28, 0.42))
            for t in onsets:
                clip, o = clips[int(rng.integers(len(clips)))]
                gain = 10 ** (rng.uniform(-12, -3) / 20)
                at = int(round(t * RATE)) - o
                lo = max(0, at)
                block[lo:at + len(clip)] += gain * clip[lo - at:]
                truth.snaps.append(round(start / RATE + t, 4))
            truth.gestures.append((round(start / RATE + onsets[0], 4), count))
            emit(out, np.clip(block[:n], -1, 1))
            start += n
        if rate != RATE:
            emit_tail = rs.flush()
            out.write(np.clip(emit_tail[:, None] * gains[None, :], -1, 1) if channels > 1 else emit_tail)
    os.replace(tmp, path)
    return truth, desc


# ---- running ----------------------------------------------------------------------------------------

def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def _cpu_s(pid: int) -> float | None:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def run_listener(recording: Path, speed: float, log_path: Path, model: Path | None) -> dict:
    import paho.mqtt.client as mqtt

    sys.path.insert(0, str(ROOT / "tests"))
    from services import Broker

    broker = Broker.create().start()
    msgs: list[tuple[float, str, dict]] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-watch")
    ready = threading.Event()
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe(f"snap_mqtt/{NODE}/#", qos=1)
    sub.on_subscribe = lambda *a: ready.set()
    sub.on_message = lambda c, u, m: msgs.append((time.monotonic(), m.topic, _json(m.payload)))
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    if not ready.wait(10):
        raise SystemExit("soak: could not subscribe to the test broker")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAP_")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "snap_mqtt.cli", "listen", "--input", str(recording), "--speed", str(speed),
           "--node-id", NODE, "--host", "127.0.0.1", "--port", str(broker.port)]
    if model is not None:
        cmd += ["--model", str(model)]
    samples: list[tuple[float, float]] = []
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        cpu = None
        while proc.poll() is None:
            r = _rss_mb(proc.pid)
            c = _cpu_s(proc.pid)
            if r is not None:
                samples.append((time.monotonic() - t0, r))
            cpu = c if c is not None else cpu
            time.sleep(1.0)
    wall = time.monotonic() - t0
    time.sleep(1.0)
    sub.disconnect()
    sub.loop_stop()
    broker.stop()
    return {"returncode": proc.returncode, "wall_s": wall, "cpu_s": cpu, "rss": samples, "messages": msgs,
            "log": log_path.read_text()}


def _json(b: bytes):
    try:
        return json.loads(b)
    except (ValueError, UnicodeDecodeError):
        return b.decode(errors="replace")


def run_detect(recording: Path, model: Path | None) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAP_")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "snap_mqtt.cli", "detect", "--json", str(recording)]
    if model is not None:
        cmd += ["--model", str(model)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"soak: detect failed: {r.stderr[-2000:]}")
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


# ---- figures ----------------------------------------------------------------------------------------

def _match(found: list[float], expected: list[float], tol: float) -> int:
    """One-to-one matches of sorted times within tol (greedy, both sorted)."""
    found, expected = sorted(found), sorted(expected)
    i = hits = 0
    for t in expected:
        while i < len(found) and found[i] < t - tol:
            i += 1
        if i < len(found) and abs(found[i] - t) <= tol:
            hits += 1
            i += 1
    return hits


def memory_figures(samples: list[tuple[float, float]], warmup_frac: float = 0.1, warmup_min_s: float = 30.0) -> dict:
    """Warm-up: the first 10 % of the run, at least 30 s (start-up imports torch, loads the model
    and fills the detector's buffers); after it RSS must stay within 10 % of its first value."""
    if len(samples) < 5:
        return {"n": len(samples)}
    t = np.array([s[0] for s in samples])
    r = np.array([s[1] for s in samples])
    warm = min(max(warmup_frac * t[-1], warmup_min_s), 0.5 * t[-1])
    after = t >= warm
    base = float(r[after][0])
    hi = float(r[after].max())
    slope = float(np.polyfit(t[after], r[after], 1)[0]) if after.sum() > 2 else 0.0
    return {"n": len(samples), "warmup_s": float(warm), "rss_after_warmup_mb": base,
            "rss_max_after_warmup_mb": hi, "rss_end_mb": float(r[-1]), "rss_peak_mb": float(r.max()),
            "growth_after_warmup_pct": 100.0 * (hi - base) / base, "slope_mb_per_hour_wall": slope * 3600,
            "flat_within_10pct": hi <= 1.10 * base}


def _online_before_first_event(msgs: list) -> bool:
    state = None
    for _, topic, payload in msgs:
        if topic.endswith("/availability"):
            state = payload
        elif topic.endswith(("/snap", "/gesture")):
            return state == "online"
    return state is not None


def summarise(truth: SoakTruth, run: dict, offline: list[dict] | None) -> dict:
    msgs = run["messages"]
    snaps = [m[2] for m in msgs if m[1].endswith("/snap") and isinstance(m[2], dict)]
    gestures = [m[2] for m in msgs if m[1].endswith("/gesture") and isinstance(m[2], dict)]
    avail = [m[2] for m in msgs if m[1].endswith("/availability")]
    snap_t = [s["time"] for s in snaps]
    res: dict = {
        "audio_seconds": truth.seconds, "wall_seconds": run["wall_s"],
        "speed_achieved": truth.seconds / run["wall_s"], "listener_cpu_s": run["cpu_s"],
        "listener_cpu_per_audio_s": (run["cpu_s"] or 0) / truth.seconds, "returncode": run["returncode"],
        "true_snaps": len(truth.snaps), "true_gestures": len(truth.gestures),
        "snap_messages": len(snaps), "gesture_messages": len(gestures),
        "true_snaps_published": _match(snap_t, truth.snaps, MATCH_S),
        # the sequence of availability changes (online must come before the events, offline last)
        "availability": [a for i, a in enumerate(avail) if i == 0 or a != avail[i - 1]],
        "online_before_first_event": _online_before_first_event(msgs),
        "memory": memory_figures(run["rss"]),
    }
    right = 0
    gt = sorted(gestures, key=lambda g: g["time"])
    for t, n in truth.gestures:
        if any(abs(g["time"] - t) <= MATCH_S and g["count"] == n for g in gt):
            right += 1
    res["true_gestures_published_right_count"] = right
    res["false_snap_messages"] = len(snaps) - res["true_snaps_published"]
    res["false_per_hour"] = res["false_snap_messages"] / (truth.seconds / 3600)
    stats = [ln for ln in run["log"].splitlines() if "stopped:" in ln]
    res["listener_summary"] = stats[-1].split("stopped:", 1)[1].strip() if stats else None
    res["errors_in_log"] = sum(" ERROR " in ln or "Traceback" in ln for ln in run["log"].splitlines())
    if offline is not None:
        off_snaps = sorted(e["time"] for e in offline if e["event_type"] == "snap")
        off_gest = sorted((e["time"], e["count"]) for e in offline if e["event_type"] != "snap")
        res["detect_snaps"] = len(off_snaps)
        res["detect_gestures"] = len(off_gest)
        res["published_equals_detect"] = (sorted(snap_t) == off_snaps and
                                          sorted((g["time"], g["count"]) for g in gestures) == off_gest)
        res["detect_snaps_missing_from_mqtt"] = len(off_snaps) - _match(snap_t, off_snaps, 1e-3)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the soak recording (60)")
    ap.add_argument("--speed", type=float, default=40.0, help="listen --speed (40: an hour in ~1.5 min "
                    "if the CPU keeps up; the replay waits for the detector, never drops)")
    ap.add_argument("--every", type=float, default=20.0, help="one gesture every this many seconds (20)")
    ap.add_argument("--rate", type=int, default=RATE, help="sample rate of the soak file (16000; e.g. 44100 "
                    "exercises the listener's resampler)")
    ap.add_argument("--channels", type=int, default=1, help="channels of the soak file (1)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="training data folder (eval backgrounds, test snaps); fixtures if absent")
    ap.add_argument("--model", type=Path, default=None, help="model file (default: the shipped one)")
    ap.add_argument("--workdir", type=Path, default=ROOT / "runs" / "soak")
    ap.add_argument("--no-detect", action="store_true", help="skip the offline `detect` comparison")
    ap.add_argument("--out", type=Path, default=None, help="JSON results (default WORKDIR/soak-<time>.json)")
    args = ap.parse_args(argv)

    rec = args.workdir / f"soak-{args.minutes:g}min-every{args.every:g}s-{args.rate}hz-{args.channels}ch.flac"
    truth_path = rec.with_suffix(".json")
    t = time.monotonic()
    if rec.exists() and truth_path.exists():
        raw = json.loads(truth_path.read_text())
        truth = SoakTruth(raw["seconds"], raw["snaps"], [tuple(g) for g in raw["gestures"]])
        desc = raw["sources"]
    else:
        truth, desc = build_recording(rec, args.minutes, args.every, args.data if args.data.is_dir() else None,
                                      rate=args.rate, channels=args.channels)
        truth_path.write_text(json.dumps({"seconds": truth.seconds, "snaps": truth.snaps,
                                          "gestures": truth.gestures, "sources": desc}))
    print(f"soak recording {rec} ({truth.seconds / 60:.0f} min, {len(truth.snaps)} snaps in "
          f"{len(truth.gestures)} gestures; {desc}); built in {time.monotonic() - t:.0f} s", flush=True)

    run = run_listener(rec, args.speed, args.workdir / "listener.log", args.model)
    offline = None if args.no_detect else run_detect(rec, args.model)
    res = summarise(truth, run, offline)
    res.update(recording=str(rec), speed_requested=args.speed, load_average=os.getloadavg(), cpu_count=os.cpu_count())
    out = args.out or args.workdir / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({**res, "rss_samples": run["rss"]}, indent=1))

    m = res["memory"]
    print(f"listen --input --speed {args.speed:g}: {res['audio_seconds'] / 60:.0f} min of audio in "
          f"{res['wall_seconds']:.0f} s ({res['speed_achieved']:.1f}x real time; listener CPU "
          f"{res['listener_cpu_per_audio_s']:.4f} s per audio s; load average {res['load_average'][0]:.1f} "
          f"on {res['cpu_count']} CPUs), exit code {res['returncode']}")
    if m.get("n", 0) >= 5:
        print(f"RSS: {m['rss_after_warmup_mb']:.0f} MB after warm-up ({m['warmup_s']:.0f} s), max "
              f"{m['rss_max_after_warmup_mb']:.0f} MB, end {m['rss_end_mb']:.0f} MB: growth "
              f"{m['growth_after_warmup_pct']:+.1f} % -> {'FLAT' if m['flat_within_10pct'] else 'NOT FLAT'} "
              f"(within 10 %), {len(run['rss'])} samples")
    print(f"published: {res['snap_messages']} snap and {res['gesture_messages']} gesture messages; "
          f"true snaps published {res['true_snaps_published']}/{res['true_snaps']}, true gestures with the "
          f"right count {res['true_gestures_published_right_count']}/{res['true_gestures']}; "
          f"{res['false_snap_messages']} other snap messages ({res['false_per_hour']:.1f}/hour)")
    if offline is not None:
        print(f"against `detect` on the same file: {res['detect_snaps']} snaps, {res['detect_gestures']} gestures; "
              f"published == detect: {res['published_equals_detect']}; detect snaps missing from MQTT: "
              f"{res['detect_snaps_missing_from_mqtt']}")
    print(f"availability changes: {res['availability']} (online before the first event: "
          f"{res['online_before_first_event']}); listener: {res['listener_summary']}; "
          f"error lines in its log: {res['errors_in_log']}")
    print(f"written: {out}")
    ok = (res["returncode"] == 0 and m.get("flat_within_10pct", False)
          and (offline is None or res["detect_snaps_missing_from_mqtt"] == 0))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
