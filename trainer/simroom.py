"""A stand-in for "someone else": another hand, another microphone, another room, simulated.

Our data has one hand, one mic and one room. To measure enrollment we need a person the default
model never heard. `Person` is drawn from a seed and changes snaps the way those three change them:

- hand: a playback-rate change (the snap's pitch and resonances move together, the snap gets
  shorter or longer) and a resonant peak where this hand's cavity rings;
- room: a shoebox room simulated with pyroomacoustics (image sources), the snapper at a random
  place in it each time, the room's own sound (held-out evaluation backgrounds) coming from
  another place;
- microphone: a random high-pass, bandwidth (cheap mics stop at 5-9 kHz), two random EQ bumps,
  its own noise floor, its own sample rate.

Look-alikes (claps, knocks, finger taps on a table) are synthesised: the data has none. They are
clearly artificial and say little about real claps; they are there so the enrollment's hard-negative
mining has something hard to mine.

`build_simroom()` writes, deterministically from the seed:
    OUT/enroll/snap/*.flac      user snaps: 2 s clips in the room, one snap each (val-split clips)
    OUT/enroll/no_snap/*.flac   ~1 minute of the room, part of it with claps/knocks/taps
    OUT/eval/scenes/*.flac      30 s scenes with singles/doubles/triples (test-split clips)
    OUT/eval/negatives/*.flac   the rest of the room's audio, no snaps (+ a look-alike file)
    OUT/eval/scenes.json        ground truth, in `snap-train scenes`' format (`snap-train evaluate`)
    OUT/person.json             the drawn hand/mic/room
Only evaluation backgrounds (`trainer.splits.background_split(...) == "eval"`) are used, split in
time: the first part of each kind is the enrollment room audio, the rest is evaluation.

    python -m trainer.simroom --data ../shared/data --out runs/simroom --seed 1
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import butter, fftconvolve, resample_poly, sosfilt

from snap_mqtt.audio_io import AudioFileError, audio_files, read_audio, write_audio_atomic
from snap_mqtt.onset import find_onset, snap_onset
from trainer.scenes import SNAP_POWER_S, peak_db
from trainer.splits import background_kind, background_split, split_of

log = logging.getLogger(__name__)

SRC_RATE = 44100  # the snap clips' rate; the hand is applied here, before the room and the mic


# --------------------------------------------------------------------------------------------
# the person


@dataclass(frozen=True)
class Person:
    seed: int
    speed: float  # hand: playback-rate factor (>1: higher, shorter snaps)
    res_hz: float  # hand: resonant peak
    res_gain_db: float
    res_q: float
    room_dim: tuple[float, float, float]
    rt60: float
    mic_pos: tuple[float, float, float]
    bg_pos: tuple[float, float, float]  # where the room's own sound comes from
    mic_rate: int
    mic_hp_hz: float
    mic_lp_hz: float
    mic_eq: tuple[tuple[float, float, float], ...]  # (freq Hz, gain dB, Q)
    mic_noise_dbfs: float
    snap_positions: tuple[tuple[float, float, float], ...] = field(default=())


def draw_person(seed: int) -> Person:
    rng = np.random.default_rng([seed, 0x5EED])
    speed = float(rng.choice([-1, 1]) * rng.uniform(0.10, 0.22))
    speed = 1.0 + speed if speed > 0 else 1.0 / (1.0 - speed)
    dim = (float(rng.uniform(3.5, 6.5)), float(rng.uniform(3.0, 5.0)), float(rng.uniform(2.4, 3.0)))
    mic = (float(rng.uniform(0.3, dim[0] - 0.3)), float(rng.uniform(0.3, 0.6)), float(rng.uniform(0.8, 1.8)))
    bg = (float(rng.uniform(0.4, dim[0] - 0.4)), float(dim[1] - rng.uniform(0.3, 0.8)), float(rng.uniform(0.5, 1.5)))
    positions = []
    while len(positions) < 12:  # the snapper somewhere 0.5-4 m from the mic, hand at 0.8-1.7 m height
        p = (float(rng.uniform(0.3, dim[0] - 0.3)), float(rng.uniform(0.3, dim[1] - 0.3)), float(rng.uniform(0.8, 1.7)))
        d = float(np.linalg.norm(np.subtract(p, mic)))
        if 0.5 <= d <= 4.0:
            positions.append(p)
    rate = int(rng.choice([16000, 44100, 48000]))
    return Person(
        seed=seed, speed=speed,
        res_hz=float(rng.uniform(1200, 4500)), res_gain_db=float(rng.uniform(4, 10)), res_q=float(rng.uniform(1.5, 4)),
        room_dim=dim, rt60=float(rng.uniform(0.3, 0.7)), mic_pos=mic, bg_pos=bg, mic_rate=rate,
        mic_hp_hz=float(rng.uniform(80, 250)), mic_lp_hz=float(min(rng.uniform(5000, 9000), 0.45 * rate)),
        mic_eq=tuple((float(rng.uniform(300, 6000)), float(rng.uniform(-8, 8)), float(rng.uniform(0.7, 2.0)))
                     for _ in range(2)),
        mic_noise_dbfs=float(rng.uniform(-72, -62)),
        snap_positions=tuple(positions),
    )


def _peaking(f0: float, gain_db: float, q: float, rate: int) -> np.ndarray:
    """RBJ cookbook peaking EQ as one second-order section."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * min(f0, 0.45 * rate) / rate
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a])
    den = np.array([1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a])
    return np.concatenate([b / den[0], den / den[0]])[None, :]


def _speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play x `factor` times faster (pitch and resonances up by `factor`, length / factor)."""
    frac = Fraction(1 / factor).limit_denominator(200)
    return resample_poly(x, frac.numerator, frac.denominator).astype(np.float32)


class SimRoom:
    """Applies a Person's hand, room and microphone to audio."""

    def __init__(self, person: Person):
        import pyroomacoustics as pra

        self.person = p = person
        e_abs, max_order = pra.inverse_sabine(p.rt60, list(p.room_dim))
        room = pra.ShoeBox(list(p.room_dim), fs=p.mic_rate, materials=pra.Material(e_abs),
                           max_order=int(min(max_order, 40)))
        room.add_microphone(list(p.mic_pos))
        for pos in (*p.snap_positions, p.bg_pos):
            room.add_source(list(pos))
        room.compute_rir()
        rirs = [np.asarray(r, dtype=np.float64) for r in room.rir[0]]
        # normalise so that a source 1 m away has a direct-path gain of about 1
        scale = 4 * np.pi
        self.snap_rirs = [r * scale for r in rirs[:-1]]
        self.bg_rir = rirs[-1] * scale
        self.rate = p.mic_rate
        self._hand_sos = _peaking(p.res_hz, p.res_gain_db, p.res_q, SRC_RATE)
        sos = [butter(2, p.mic_hp_hz, btype="highpass", fs=self.rate, output="sos")]
        if p.mic_lp_hz < 0.45 * self.rate:
            sos.append(butter(4, p.mic_lp_hz, btype="lowpass", fs=self.rate, output="sos"))
        sos += [_peaking(f, g, q, self.rate) for f, g, q in p.mic_eq]
        self._mic_sos = np.concatenate(sos)

    def hand(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """x at SRC_RATE -> this hand's snap, at SRC_RATE (each snap a little different)."""
        y = _speed(np.asarray(x, dtype=np.float64), self.person.speed * rng.uniform(0.97, 1.03))
        return sosfilt(self._hand_sos, y)

    def mic(self, x: np.ndarray) -> np.ndarray:
        return sosfilt(self._mic_sos, x)

    def snap(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A source snap clip (SRC_RATE) as this person's snap heard by this mic in this room
        (mic rate, clean: no background, no noise floor)."""
        y = self.hand(x, rng)
        y = resample_poly(y, *_ratio(SRC_RATE, self.rate))
        rir = self.snap_rirs[int(rng.integers(len(self.snap_rirs)))]
        return self.mic(fftconvolve(y, rir)).astype(np.float32)

    def ambient(self, x: np.ndarray) -> np.ndarray:
        """Room sound (already at the mic rate) played from the background position."""
        return self.mic(fftconvolve(x, self.bg_rir)[: len(x)]).astype(np.float32)

    def noise_floor(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return (rng.standard_normal(n) * 10 ** (self.person.mic_noise_dbfs / 20)).astype(np.float32)


def _ratio(rate_in: int, rate_out: int) -> tuple[int, int]:
    f = Fraction(rate_out, rate_in).limit_denominator(1000)
    return f.numerator, f.denominator


# --------------------------------------------------------------------------------------------
# synthetic look-alikes (at the mic rate, dry)


def clap(rate: int, rng: np.random.Generator) -> np.ndarray:
    """Hand clap: a band-passed noise burst of 1-3 quick micro-impacts, 5-15 ms decay."""
    n = int(0.12 * rate)
    t = np.arange(n) / rate
    env = np.zeros(n)
    for k in range(int(rng.integers(1, 4))):
        t0 = rng.uniform(0, 0.006) if k else 0.0
        env += np.where(t >= t0, np.exp(-(t - t0) / rng.uniform(0.005, 0.015)), 0) * rng.uniform(0.5, 1)
    lo = rng.uniform(500, 1200)
    hi = min(rng.uniform(2500, 5000), 0.45 * rate)
    noise = sosfilt(butter(2, [lo, hi], btype="bandpass", fs=rate, output="sos"), rng.standard_normal(n))
    return noise * env


def knock(rate: int, rng: np.random.Generator) -> np.ndarray:
    """Knuckle on a table or door: a short click and 2-3 damped low resonances."""
    n = int(0.15 * rate)
    t = np.arange(n) / rate
    y = np.zeros(n)
    for _ in range(int(rng.integers(2, 4))):
        y += np.sin(2 * np.pi * rng.uniform(120, 800) * t + rng.uniform(0, 6.3)) * np.exp(-t / rng.uniform(0.01, 0.04))
    click = rng.standard_normal(n) * np.exp(-t / 0.001) * rng.uniform(0.3, 1.0)
    return y + click


def tap(rate: int, rng: np.random.Generator) -> np.ndarray:
    """Fingertip tap on a hard surface: a brief damped ring, mid frequencies."""
    n = int(0.06 * rate)
    t = np.arange(n) / rate
    return np.sin(2 * np.pi * rng.uniform(300, 1800) * t) * np.exp(-t / rng.uniform(0.003, 0.01)) \
        + rng.standard_normal(n) * np.exp(-t / 0.0007) * 0.3


LOOKALIKES = {"clap": clap, "knock": knock, "tap": tap}


# --------------------------------------------------------------------------------------------
# sources


@dataclass
class Sources:
    snaps: dict[str, list[np.ndarray]]  # split -> clean source snap clips at SRC_RATE, onset inside
    room: dict[str, np.ndarray]  # background kind -> eval-part room audio at the mic rate (dry)


def load_sources(data: Path, rate: int, max_bg_seconds: float | None = None) -> Sources:
    snaps: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for f in audio_files([data / "snap"]):
        try:
            a = read_audio(f, SRC_RATE)
        except AudioFileError as exc:
            log.warning("skipped %s", exc)
            continue
        o = snap_onset(a.samples, SRC_RATE)
        # the whole attack and at least 70 ms of ring-out inside the clip
        if o is None or not 0.005 * SRC_RATE <= o <= len(a.samples) - 0.07 * SRC_RATE:
            continue
        snaps[split_of(f.name)].append(a.samples)
    room: dict[str, list[np.ndarray]] = {}
    bg_root = data / "background"
    for f in audio_files([bg_root]):
        rel = f.relative_to(bg_root).as_posix()
        if background_split(rel) != "eval":
            continue
        try:
            a = read_audio(f, rate, max_seconds=max_bg_seconds)
        except AudioFileError as exc:
            log.warning("skipped %s", exc)
            continue
        room.setdefault(background_kind(rel), []).append(a.samples)
    if not room:
        raise FileNotFoundError(f"{bg_root}: no evaluation background recordings found")
    return Sources(snaps=snaps, room={k: np.concatenate(v) for k, v in sorted(room.items())})


# --------------------------------------------------------------------------------------------
# mixing


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def place(bed: np.ndarray, clean: np.ndarray, onset_in_clean: int, at: int, snr_db: float,
          rate: int, reference: np.ndarray | None = None) -> float:
    """Add `clean` into `bed` (in place) so that its onset lands at sample `at`, at `snr_db` over
    the level in the 250 ms after the onset of `reference` (default: the bed itself, sounds placed
    before included). Returns the gain applied (0 when nothing of it fell inside `bed`)."""
    start = at - onset_in_clean
    a, b = max(0, start), min(len(bed), start + len(clean))
    if b <= a:
        return 0.0
    seg = clean[a - start: b - start]
    span = slice(at, min(len(bed), at + int(0.25 * rate)))
    snap_rms = _rms(clean[onset_in_clean: onset_in_clean + int(0.25 * rate)])
    bed_rms = max(_rms((bed if reference is None else reference)[span]), 1e-4)
    gain = bed_rms * 10 ** (snr_db / 20) / snap_rms
    bed[a:b] += seg * gain
    return float(gain)


def _normalise_bed(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Room sound at a plausible level: -38 to -28 dBFS RMS."""
    return x * (10 ** (rng.uniform(-38, -28) / 20) / _rms(x))


def _finish(x: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    return (x * (0.95 / peak) if peak > 0.95 else x).astype(np.float32)


def transformed_snap(sim: SimRoom, src: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """(clean snap at the mic rate, its onset found from the signal)."""
    y = sim.snap(src, rng)
    o = find_onset(y, sim.rate)
    return y, (o.index if o is not None else 0)


def room_stream(sim: SimRoom, room: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each background kind played in the simulated room, at room level."""
    return {k: _normalise_bed(sim.ambient(v), rng) for k, v in room.items()}


def split_room(stream: dict[str, np.ndarray], enroll_seconds: float, rate: int
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The first part of every kind (in proportion to its length) for enrollment, the rest for
    evaluation: the two never share a sample."""
    total = sum(len(v) for v in stream.values())
    frac = min(0.5, enroll_seconds * rate / total)
    enroll, evaluation = {}, {}
    for k, v in stream.items():
        n = int(len(v) * frac)
        enroll[k], evaluation[k] = v[:n], v[n:]
    return enroll, evaluation


def with_lookalikes(bed: np.ndarray, sim: SimRoom, rng: np.random.Generator, every: tuple[float, float]
                    ) -> tuple[np.ndarray, list[dict]]:
    """Bed with claps, knocks and taps every `every` seconds (sometimes two or three in a row, as
    people knock), played from random places in the room."""
    rate = sim.rate
    out = bed.copy()
    events = []
    t = rng.uniform(*every)
    while t < len(bed) / rate - 0.5:
        kind = str(rng.choice(list(LOOKALIKES)))
        reps = int(rng.choice([1, 1, 2, 3])) if kind == "knock" else int(rng.choice([1, 1, 2]))
        for r in range(reps):
            dry = LOOKALIKES[kind](rate, rng)
            wet = sim.mic(fftconvolve(dry, sim.snap_rirs[int(rng.integers(len(sim.snap_rirs)))]))
            o = find_onset(wet, rate)
            at = int((t + r * rng.uniform(0.2, 0.4)) * rate)
            place(out, wet, o.index if o else 0, at, rng.uniform(5, 30), rate)
            events.append({"kind": kind, "time": round(at / rate, 4)})
        t += rng.uniform(*every) + reps * 0.4
    return out, events


# --------------------------------------------------------------------------------------------
# outputs


def write_enrollment(out: Path, sim: SimRoom, srcs: list[np.ndarray], room: dict[str, np.ndarray],
                     n_snaps: int, rng: np.random.Generator, clip_seconds: float = 2.0,
                     lookalike_fraction: float = 0.3) -> dict:
    """OUT/snap: n_snaps clips of `clip_seconds` with one snap each in room sound; OUT/no_snap: the
    room audio in 10 s files, the last `lookalike_fraction` of it with claps/knocks/taps."""
    rate = sim.rate
    (out / "snap").mkdir(parents=True, exist_ok=True)
    (out / "no_snap").mkdir(parents=True, exist_ok=True)
    bed_all = np.concatenate(list(room.values()))
    n_clip = int(clip_seconds * rate)
    for i in range(n_snaps):
        src = srcs[i % len(srcs)]
        s0 = int(rng.integers(0, max(1, len(bed_all) - n_clip)))
        bed = bed_all[s0: s0 + n_clip].copy() + sim.noise_floor(n_clip, rng)
        clean, o = transformed_snap(sim, src, rng)
        at = int(rng.uniform(0.3, clip_seconds - 0.6) * rate)
        place(bed, clean, o, at, rng.uniform(6, 30), rate)
        write_audio_atomic(out / "snap" / f"sim-snap-{i:03d}.flac", _finish(bed), rate, subtype="PCM_16")
    cut = int(len(bed_all) * (1 - lookalike_fraction))
    plain = bed_all[:cut] + sim.noise_floor(cut, rng)
    looks, events = with_lookalikes(bed_all[cut:] + sim.noise_floor(len(bed_all) - cut, rng), sim, rng, (1.5, 3.0))
    n_files = 0
    for name, x in (("room", plain), ("lookalikes", looks)):
        step = 10 * rate
        for k in range(0, len(x), step):
            piece = x[k: k + step]
            if len(piece) < rate:
                continue
            write_audio_atomic(out / "no_snap" / f"sim-{name}-{k // step:03d}.flac", _finish(piece), rate, subtype="PCM_16")
            n_files += 1
    return {"snaps": n_snaps, "room_seconds": round(len(bed_all) / rate, 1), "no_snap_files": n_files,
            "lookalikes": len(events)}


def make_scene(sim: SimRoom, bed: np.ndarray, srcs: list[np.ndarray], rng: np.random.Generator
               ) -> tuple[np.ndarray, list[dict], list[dict]]:
    """Singles, doubles and triples (snaps 0.25-0.5 s apart, gestures >= 3 s apart) at local SNRs
    of 3-30 dB in a bed of room sound. Ground truth: every snap onset, every gesture's count."""
    rate = sim.rate
    x = bed.copy() + sim.noise_floor(len(bed), rng)
    snaps: list[dict] = []
    gestures: list[dict] = []
    t = rng.uniform(1.0, 2.0)
    seconds = len(bed) / rate
    while True:
        count = int(rng.choice([1, 2, 3]))
        times = [t]
        for _ in range(count - 1):
            times.append(times[-1] + rng.uniform(0.25, 0.5))
        if times[-1] > seconds - 1.5:
            break
        snr = rng.uniform(3, 30)
        placed = []
        for ts in times:
            clean, o = transformed_snap(sim, srcs[int(rng.integers(len(srcs)))], rng)
            at = int(round(ts * rate))
            s_db = float(np.clip(snr + rng.uniform(-2, 2), 3, 30))
            gain = place(x, clean, o, at, s_db, rate)
            placed.append(round(at / rate, 6))
            snaps.append({"time": placed[-1], "clip": "simulated", "snr_db": round(s_db, 2), "gesture": len(gestures),
                          "peak_dbfs": peak_db(gain * clean[o:o + int(SNAP_POWER_S * rate)])})
        gestures.append({"time": placed[0], "count": count, "snaps": placed})
        t = times[-1] + rng.uniform(3.0, 4.5)
    out = _finish(x)
    scaled = peak_db(out) - peak_db(x)
    for sn in snaps:  # as the scene file holds it: _finish may have turned the whole scene down
        sn["peak_dbfs"] = round(sn["peak_dbfs"] + scaled, 2)
    return out, snaps, gestures


def write_evaluation(out: Path, sim: SimRoom, srcs: list[np.ndarray], room: dict[str, np.ndarray],
                     rng: np.random.Generator, scene_seconds: float = 30.0, lookalike_seconds: float = 300.0) -> dict:
    """Scenes and negatives with an index in `snap-train scenes`' format (OUT/scenes.json), so
    `snap-train evaluate` reads them as it reads its own."""
    rate = sim.rate
    (out / "scenes").mkdir(parents=True, exist_ok=True)
    (out / "negatives").mkdir(parents=True, exist_ok=True)
    n_scene = int(scene_seconds * rate)
    scenes, negatives = [], []
    for kind, stream in room.items():
        piece = stream + sim.noise_floor(len(stream), rng)
        name = f"negatives/{kind}.flac"
        write_audio_atomic(out / name, _finish(piece), rate, subtype="PCM_16")
        negatives.append({"file": name, "kind": kind, "sample_rate": rate, "seconds": len(piece) / rate,
                          "sources": [f"simroom eval-part {kind}"]})
        # scenes: the same room sound with snaps in it
        for k in range(0, len(stream) - n_scene + 1, n_scene):
            audio, snaps, gestures = make_scene(sim, stream[k: k + n_scene], srcs, rng)
            name = f"scenes/scene-{len(scenes):03d}-{rate}-{kind}.flac"
            write_audio_atomic(out / name, audio, rate, subtype="PCM_16")
            scenes.append({"file": name, "sample_rate": rate, "seconds": len(audio) / rate, "kind": kind,
                           "backgrounds": [{"file": f"simroom eval-part {kind}", "from_s": k / rate}],
                           "snaps": snaps, "gestures": gestures})
    # look-alikes: claps, knocks, taps over a mix of the room's sound
    bed = np.concatenate(list(room.values()))
    start = int(rng.integers(0, max(1, len(bed) - int(lookalike_seconds * rate))))
    bed = bed[start: start + int(lookalike_seconds * rate)]
    looks, events = with_lookalikes(bed + sim.noise_floor(len(bed), rng), sim, rng, (2.0, 5.0))
    write_audio_atomic(out / "negatives" / "lookalikes.flac", _finish(looks), rate, subtype="PCM_16")
    negatives.append({"file": "negatives/lookalikes.flac", "kind": "lookalikes", "sample_rate": rate,
                      "seconds": len(looks) / rate, "sources": ["synthetic claps/knocks/taps"], "events": events})
    index = {"format": "snap-mqtt-scenes", "version": 1, "simroom": True, "scenes": scenes, "negatives": negatives}
    (out / "scenes.json").write_text(json.dumps(index, indent=1))
    return {"scenes": len(scenes), "snaps": sum(len(s["snaps"]) for s in scenes),
            "gestures": sum(len(s["gestures"]) for s in scenes),
            "negative_seconds": {n["kind"]: round(n["seconds"], 1) for n in negatives}, "lookalikes": len(events)}


def build_simroom(data: Path, out: Path, seed: int = 1, n_snaps: int = 50, room_seconds: float = 60.0,
                  scene_seconds: float = 30.0) -> dict:
    """Write the enrollment folder and the evaluation scenes/negatives for one simulated person."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: already exists and is not empty (nothing is overwritten)")
    person = draw_person(seed)
    sim = SimRoom(person)
    srcs = load_sources(data, sim.rate)
    if not srcs.snaps["val"] or not srcs.snaps["test"]:
        raise FileNotFoundError(f"{data / 'snap'}: too few usable snap clips in the val/test split")
    rng = np.random.default_rng([seed, 1])
    stream = room_stream(sim, srcs.room, rng)
    enroll_room, eval_room = split_room(stream, room_seconds, sim.rate)
    # enrollment snaps from the val split, evaluation snaps from the test split: never the same clip
    summary = {
        "person": asdict(person),
        "enroll": write_enrollment(out / "enroll", sim, srcs.snaps["val"], enroll_room, n_snaps,
                                   np.random.default_rng([seed, 2])),
        "eval": write_evaluation(out / "eval", sim, srcs.snaps["test"], eval_room,
                                 np.random.default_rng([seed, 3]), scene_seconds),
    }
    (out / "person.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainer.simroom", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--snaps", type=int, default=50)
    ap.add_argument("--room-seconds", type=float, default=60.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    summary = build_simroom(args.data, args.out, args.seed, args.snaps, args.room_seconds)
    print(json.dumps({k: v for k, v in summary.items() if k != "person"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
