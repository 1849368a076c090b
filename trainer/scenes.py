"""`snap-train scenes`: evaluation recordings built only from data kept out of training.

Scenes: 30 s of one kind of evaluation background (keyboard, speech, music, household, other) with
held-out (test-part) snap clips mixed in at known times as single, double and triple snaps (snaps
0.25-0.5 s apart, gestures at least 3 s apart) at local SNRs of about 3-30 dB, at 16 kHz and at
44.1/48 kHz. Negatives: all the evaluation background audio per kind, and the test-part no_snap
clips, concatenated, with no snap at all. Everything is deterministic from --seed, and the ground
truth (every onset found from the signal, every gesture's count, every source file) goes to
<out>/scenes.json.

Local SNR of a snap: power of the clip over the 50 ms from its onset against the power of the
background over the 500 ms around that onset.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from snap_mqtt.audio_io import db

log = logging.getLogger(__name__)

INDEX_NAME = "scenes.json"
SNAP_POWER_S = 0.050
BG_POWER_S = 0.250  # each side of the onset
BG_FLOOR_DB = -70.0  # a digitally silent bed still has a microphone noise floor
FADE_IN_S = 0.004  # clip edges are faded so that a clip's own room noise adds no click
FADE_OUT_S = 0.010
XFADE_S = 0.020  # joins between background files
MIN_ONSET_S = 0.005  # the whole attack must lie inside the clip...
MAX_ONSET_S = 0.200  # ...and at least 50 ms of the snap after it
HEADROOM = 0.98


@dataclass(frozen=True)
class SceneParams:
    seconds: float = 30.0
    snr_min_db: float = 3.0
    snr_max_db: float = 30.0
    snap_gap_min_s: float = 0.25
    snap_gap_max_s: float = 0.50
    gesture_gap_min_s: float = 3.0
    gesture_gap_max_s: float = 4.5
    lead_in_s: float = 1.0
    tail_s: float = 1.5  # room after the last snap for the gesture gap to expire


@dataclass
class Clip:
    name: str
    path: Path
    onset_s: float  # in the clip at its native rate


@dataclass
class BackgroundFile:
    rel: str  # path relative to background/
    path: Path
    kind: str
    part: tuple[float, float] = (0.0, 1.0)  # the share of the file used, from..to (validation: 0.70..0.85)


@dataclass
class Inputs:
    snaps: list[Clip]
    rejected_snaps: list[str]
    no_snaps: list[Path]
    backgrounds: list[BackgroundFile]

    def kinds(self) -> list[str]:
        return sorted({b.kind for b in self.backgrounds})


@dataclass
class PlacedSnap:
    time: float  # true onset in the scene, seconds
    clip: str
    snr_db: float
    gain_db: float
    gesture: int  # index of its gesture in the scene
    onset_check_ms: float | None = None  # onset re-found in the mix minus `time` (a test of the truth)
    # the snap's own peak as mixed (its first 50 ms, gain applied), dB below full scale: the model's
    # front end is absolute, so how loud a snap arrives matters apart from its SNR
    peak_dbfs: float | None = None


@dataclass
class Scene:
    file: str
    sample_rate: int
    seconds: float
    kind: str
    backgrounds: list[dict]
    snaps: list[PlacedSnap] = field(default_factory=list)
    gestures: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# inputs

def _kind(rel: str) -> str:
    from trainer.splits import background_kind

    # a flat folder (background/speech.flac, as in the test fixtures): the file's name is its kind
    return background_kind(rel) if "/" in rel.replace("\\", "/") else Path(rel).stem


def collect_inputs(data: Path, background_split: str = "eval", clip_split: str = "test") -> Inputs:
    """Find the held-out clips and backgrounds under `data` (snap/, no_snap/, background/).

    `background_split`: 'eval' (the files kept out of training), 'all', or 'val': the validation
    part of the training backgrounds as `snap-train train` splits them (70-85 % of each long file,
    short files whose name hashes to val), for validation scenes that tune detector settings without
    touching the evaluation backgrounds. `clip_split`: the snap/no_snap part ('test', 'val', 'any')."""
    from snap_mqtt.audio_io import AUDIO_SUFFIXES, read_audio
    from snap_mqtt.onset import snap_onset
    from trainer.cli import UsageError
    from trainer.splits import background_split as bg_split_of
    from trainer.splits import split_of

    for sub in ("snap", "no_snap", "background"):
        if not (data / sub).is_dir():
            raise UsageError(f"{data / sub}: no such folder (--data needs snap/, no_snap/ and background/)")

    def files(folder: Path) -> list[Path]:
        return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)

    snaps, rejected = [], []
    for p in files(data / "snap"):
        if clip_split != "any" and split_of(p.name) != clip_split:
            continue
        a = read_audio(p)
        o = snap_onset(a.samples, a.sample_rate)
        if o is None or not (MIN_ONSET_S <= o / a.sample_rate <= MAX_ONSET_S):
            rejected.append(p.name)  # no clear snap, or its attack/body cut off by the clip's edge
            continue
        snaps.append(Clip(p.name, p, o / a.sample_rate))
    no_snaps = [p for p in files(data / "no_snap") if clip_split == "any" or split_of(p.name) == clip_split]
    bgs = []
    for p in files(data / "background"):
        rel = p.relative_to(data / "background").as_posix()
        if background_split == "all" or (background_split == "eval" and bg_split_of(rel) == "eval"):
            bgs.append(BackgroundFile(rel, p, _kind(rel)))
        elif background_split == "val" and bg_split_of(rel) != "eval":
            part = validation_part(p)
            if part is not None:
                bgs.append(BackgroundFile(rel, p, _kind(rel), part))
    if not snaps:
        raise UsageError(f"{data / 'snap'}: no {clip_split}-part snap clip with a clear onset")
    if not bgs:
        raise UsageError(f"{data / 'background'}: no evaluation background file (see trainer/splits.py; "
                         "--background-split all uses every file, for folders holding only held-out audio)")
    return Inputs(snaps, rejected, no_snaps, bgs)


def validation_part(path: Path) -> tuple[float, float] | None:
    """The share of a training background file that `snap-train train` keeps for validation
    (trainer.data: long files split by time, short ones by name); None when it holds none."""
    import soundfile as sf

    from trainer.data import LONG_BACKGROUND_S
    from trainer.splits import split_of

    info = sf.info(str(path))
    if info.frames / info.samplerate >= LONG_BACKGROUND_S:
        return (0.70, 0.85)
    return (0.0, 1.0) if split_of(path.name) == "val" else None


# ---------------------------------------------------------------------------------------------
# signal helpers (pure)

def join(parts: list[np.ndarray], rate: int, xfade_s: float = XFADE_S) -> np.ndarray:
    """Concatenate with short equal-power crossfades: a hard cut would be a click, i.e. a transient
    that is in no recording."""
    n = int(xfade_s * rate)
    out = np.asarray(parts[0], dtype=np.float32)
    for p in parts[1:]:
        p = np.asarray(p, dtype=np.float32)
        k = min(n, len(out) // 2, len(p) // 2)
        if k < 2:
            out = np.concatenate([out, p])
            continue
        ramp = np.sin(np.linspace(0, np.pi / 2, k, dtype=np.float32)) ** 2
        mid = out[-k:] * np.sqrt(1 - ramp) + p[:k] * np.sqrt(ramp)
        out = np.concatenate([out[:-k], mid, p[k:]])
    return out


def faded(clip: np.ndarray, rate: int) -> np.ndarray:
    x = np.array(clip, dtype=np.float32)
    a, b = int(FADE_IN_S * rate), int(FADE_OUT_S * rate)
    if a > 1:
        x[:a] *= np.sin(np.linspace(0, np.pi / 2, a)) ** 2
    if b > 1:
        x[-b:] *= np.cos(np.linspace(0, np.pi / 2, b)) ** 2
    return x


def power_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20)) if len(x) else -200.0


def peak_db(x: np.ndarray) -> float:
    return db(float(np.max(np.abs(x))) if len(x) else 0.0)


def add_at_snr(mix: np.ndarray, bed: np.ndarray, clip: np.ndarray, onset: int, pos: int, want_db: float,
               rate: int) -> tuple[float, float]:
    """Add `clip` into `mix` (in place) with its onset at sample `pos`, at `want_db` local SNR over
    `bed` (this module's definition), turned down instead of clipping the mix (its SNR is then what
    it is). The part of the clip outside `mix` is left out. Returns (gain, the SNR it got, dB)."""
    start = pos - onset
    a, b = max(0, start), min(len(mix), start + len(clip))
    part = clip[a - start:b - start]
    p_snap = np.mean(np.square(clip[onset:onset + int(SNAP_POWER_S * rate)], dtype=np.float64))
    w = int(BG_POWER_S * rate)
    p_bg = np.mean(np.square(bed[max(0, pos - w):pos + w], dtype=np.float64))
    gain = np.sqrt(max(p_bg, 10 ** (BG_FLOOR_DB / 10)) * 10 ** (want_db / 10) / max(p_snap, 1e-20))
    peak = float(np.max(np.abs(mix[a:b] + gain * part)))
    if peak > HEADROOM:
        gain *= HEADROOM / peak
    mix[a:b] += gain * part
    return float(gain), float(10 * np.log10(gain ** 2 * p_snap / max(p_bg, 1e-20)))


def gesture_truth(times: list[float], rate: int) -> dict:
    """A gesture's ground truth: its first snap's time, its count and every snap's time, on samples."""
    return {"time": round(round(times[0] * rate) / rate, 6), "count": len(times),
            "snaps": [round(round(t * rate) / rate, 6) for t in times]}


def gesture_times(rng: np.random.Generator, p: SceneParams) -> list[list[float]]:
    """Onset times of each gesture in a scene: counts 1-3 at random, snaps 0.25-0.5 s apart,
    gestures at least 3 s apart, all inside [lead_in, seconds - tail]."""
    out: list[list[float]] = []
    t = p.lead_in_s + float(rng.uniform(0, 1.0))
    while True:
        count = int(rng.integers(1, 4))
        times = [t]
        for _ in range(count - 1):
            times.append(times[-1] + float(rng.uniform(p.snap_gap_min_s, p.snap_gap_max_s)))
        if times[-1] > p.seconds - p.tail_s:
            break
        out.append([round(x, 4) for x in times])
        t = times[-1] + float(rng.uniform(p.gesture_gap_min_s, p.gesture_gap_max_s))
    return out


# ---------------------------------------------------------------------------------------------
# building

class _Cache:
    """Audio read once per (file, rate)."""

    def __init__(self) -> None:
        self._d: dict[tuple[Path, int], np.ndarray] = {}

    def get(self, path: Path, rate: int) -> np.ndarray:
        from snap_mqtt.audio_io import read_audio

        key = (path, rate)
        if key not in self._d:
            self._d[key] = read_audio(path, rate).samples
        return self._d[key]

    def background(self, b: BackgroundFile, rate: int) -> np.ndarray:
        x = self.get(b.path, rate)
        return x[int(b.part[0] * len(x)): int(b.part[1] * len(x))]


def make_bed(files: list[BackgroundFile], rate: int, seconds: float, rng: np.random.Generator,
             cache: _Cache) -> tuple[np.ndarray, list[dict]]:
    """`seconds` of one kind of background: its files in a random order from a random point,
    joined with crossfades (and looped when the kind holds less audio than that)."""
    n = int(round(seconds * rate))
    order = [files[i] for i in rng.permutation(len(files))]
    if not any(len(cache.background(f, rate)) for f in files):
        raise ValueError(f"background files hold no audio: {', '.join(f.rel for f in files)}")
    parts, used, total, k = [], [], 0, 0
    while total < n + int(XFADE_S * rate) * (len(parts) + 1):
        f = order[k % len(order)]
        x = cache.background(f, rate)
        start = int(rng.integers(0, max(1, len(x) - rate))) if k == 0 else 0
        # never an empty piece: with short files the crossfades eat into the total, and a
        # piece of what is still missing could otherwise come out empty (an endless loop)
        seg = x[start:start + max(n - total, 0) + int(0.5 * rate)]
        parts.append(seg)
        used.append({"file": f.rel, "from_s": round(start / rate, 3), "seconds": round(len(seg) / rate, 3)})
        total += len(seg)
        k += 1
    return join(parts, rate)[:n].copy(), used


def build_scene(index: int, inputs: Inputs, kind: str, rate: int, params: SceneParams,
                rng: np.random.Generator, cache: _Cache, clip_order: list[int]) -> tuple[Scene, np.ndarray]:
    from snap_mqtt.onset import find_onset

    bed, used = make_bed([b for b in inputs.backgrounds if b.kind == kind], rate, params.seconds, rng, cache)
    mix = bed.copy()
    scene = Scene(file=f"scenes/scene-{index:03d}-{rate}-{kind}.flac", sample_rate=rate,
                  seconds=len(bed) / rate, kind=kind, backgrounds=used)
    for g, times in enumerate(gesture_times(rng, params)):
        for t in times:
            clip_meta = inputs.snaps[clip_order.pop(0)] if clip_order else inputs.snaps[int(rng.integers(len(inputs.snaps)))]
            clip = faded(cache.get(clip_meta.path, rate), rate)
            o = int(round(clip_meta.onset_s * rate))
            pos = int(round(t * rate))
            want = float(rng.uniform(params.snr_min_db, params.snr_max_db))
            gain, snr = add_at_snr(mix, bed, clip, o, pos, want, rate)
            # re-found in the mix (a slice with 50 ms of lead-in for the high-pass to settle)
            a = max(0, pos - int(0.08 * rate))
            check = find_onset(mix[a:pos + int(0.06 * rate)], rate, start=pos - int(0.03 * rate) - a)
            scene.snaps.append(PlacedSnap(
                time=round(pos / rate, 6), clip=clip_meta.name, snr_db=round(float(snr), 2),
                gain_db=round(float(20 * np.log10(gain)), 2), gesture=g,
                onset_check_ms=None if check is None else round((a + check.index - pos) / rate * 1000, 2),
                peak_dbfs=round(peak_db(gain * clip[o:o + int(SNAP_POWER_S * rate)]), 2)))
        scene.gestures.append(gesture_truth(times, rate))
    return scene, mix


def build_negatives(inputs: Inputs, rate: int, cache: _Cache) -> list[tuple[dict, np.ndarray]]:
    """One long recording per background kind (all its evaluation files), and the held-out
    no_snap clips end to end."""
    out = []
    for kind in inputs.kinds():
        files = [b for b in inputs.backgrounds if b.kind == kind]
        x = join([cache.background(b, rate) for b in files], rate)
        out.append(({"file": f"negatives/{kind}.flac", "kind": kind, "sample_rate": rate,
                     "seconds": len(x) / rate, "sources": [b.rel for b in files]}, x))
    if inputs.no_snaps:
        x = join([cache.get(p, rate) for p in inputs.no_snaps], rate, xfade_s=0.010)
        out.append(({"file": "negatives/no_snap.flac", "kind": "no_snap", "sample_rate": rate,
                     "seconds": len(x) / rate, "sources": [p.name for p in inputs.no_snaps]}, x))
    return out


def build(data: Path, out: Path, seed: int = 0, n_scenes: int = 36,
          rates: tuple[int, ...] = (16000, 16000, 44100, 48000), params: SceneParams = SceneParams(),
          background_split: str = "eval", negative_rate: int = 16000, clip_split: str = "test") -> dict:
    """Build scenes and negatives into `out` and return the index written to out/scenes.json."""
    from snap_mqtt.audio_io import write_audio_atomic
    from trainer import __version__
    from trainer.cli import UsageError

    if (out / INDEX_NAME).exists():
        raise UsageError(f"{out / INDEX_NAME} exists: scenes are never overwritten; choose another --out")
    if any((out / sub).is_dir() and any((out / sub).iterdir()) for sub in ("scenes", "negatives")):
        raise UsageError(f"{out}: holds files from an unfinished run; choose another --out or remove them")
    inputs = collect_inputs(data, background_split, clip_split)
    rng = np.random.default_rng(seed)
    cache = _Cache()
    (out / "scenes").mkdir(parents=True, exist_ok=True)
    (out / "negatives").mkdir(parents=True, exist_ok=True)
    kinds = inputs.kinds()
    clip_order: list[int] = []
    scenes = []
    for i in range(n_scenes):
        if len(clip_order) < 30:  # every clip used about equally often
            clip_order.extend(int(k) for k in rng.permutation(len(inputs.snaps)))
        kind, rate = kinds[i % len(kinds)], rates[i % len(rates)]
        scene, mix = build_scene(i, inputs, kind, rate, params, rng, cache, clip_order)
        write_audio_atomic(out / scene.file, mix, rate, subtype="PCM_24")
        scenes.append(asdict(scene))
        log.info("%s: %d snaps in %d gestures", scene.file, len(scene.snaps), len(scene.gestures))
    negatives = []
    for meta, x in build_negatives(inputs, negative_rate, cache):
        write_audio_atomic(out / meta["file"], x, negative_rate, subtype="PCM_24")
        negatives.append(meta)
    index = {
        "format": "snap-mqtt-scenes", "version": 1, "trainer_version": __version__,
        "seed": seed, "data": str(data), "background_split": background_split, "clip_split": clip_split,
        "params": asdict(params), "rates": list(rates),
        "snr_definition": f"clip power over {SNAP_POWER_S * 1000:.0f} ms from its onset vs background power "
                          f"over +-{BG_POWER_S * 1000:.0f} ms around it (floor {BG_FLOOR_DB:g} dBFS)",
        "snap_clips": [c.name for c in inputs.snaps],
        "rejected_snap_clips": inputs.rejected_snaps,
        "background_files": sorted(b.rel for b in inputs.backgrounds),
        "scenes": scenes, "negatives": negatives,
    }
    return write_index(out, index)


def write_index(out: Path, index: dict) -> dict:
    """Write out/scenes.json whole or not at all (a reader never sees half an index); returns it."""
    tmp = out / f".{INDEX_NAME}.part"
    tmp.write_text(json.dumps(index, indent=1))
    tmp.replace(out / INDEX_NAME)
    return index


def load_index(scenes_dir: Path) -> dict:
    from trainer.cli import UsageError

    p = scenes_dir / INDEX_NAME
    if not p.is_file():
        raise UsageError(f"{p}: not found (build scenes with `snap-train scenes --out {scenes_dir}`)")
    try:
        index = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != "snap-mqtt-scenes":
        raise UsageError(f"{p}: not a snap-mqtt scenes index (field 'format')")
    return index


# ---------------------------------------------------------------------------------------------
# CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="data folder with snap/, no_snap/, background/")
    parser.add_argument("--out", type=Path, required=True, help="new folder for scenes, negatives and scenes.json")
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same scenes (default 0)")
    parser.add_argument("--scenes", type=int, default=36, help="number of 30 s scenes (default 36)")
    parser.add_argument("--rates", default="16000,16000,44100,48000",
                        help="sample rates given to scenes in turn (default: half 16 kHz, a quarter each 44.1/48 kHz)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of a scene (default 30)")
    parser.add_argument("--snr", default="3,30", help="local SNR range in dB, MIN,MAX (default 3,30)")
    parser.add_argument("--background-split", choices=("eval", "all", "val"), default="eval",
                        help="'eval': only the backgrounds kept out of training (trainer/splits.py); "
                             "'all': every file (for a folder of held-out audio only, e.g. test fixtures); "
                             "'val': the validation part of the training backgrounds (scenes for tuning detector "
                             "settings without touching the evaluation audio)")
    parser.add_argument("--clips", choices=("test", "val"), default="test",
                        help="which part's snap and no_snap clips (default test; val for validation scenes)")


def run(args: argparse.Namespace) -> int:
    from trainer.cli import UsageError

    try:
        rates = tuple(int(r) for r in str(args.rates).split(","))
        lo, hi = (float(v) for v in str(args.snr).split(","))
    except ValueError:
        raise UsageError(f"--rates {args.rates!r} / --snr {args.snr!r}: expected comma-separated numbers") from None
    if args.scenes < 1 or args.seconds < 8 or lo > hi or any(r < 8000 for r in rates):
        raise UsageError("--scenes must be >= 1, --seconds >= 8, --snr MIN <= MAX, --rates >= 8000")
    index = build(args.data, args.out, seed=args.seed, n_scenes=args.scenes, rates=rates,
                  params=SceneParams(seconds=args.seconds, snr_min_db=lo, snr_max_db=hi),
                  background_split=args.background_split, clip_split=args.clips)
    n_snaps = sum(len(s["snaps"]) for s in index["scenes"])
    n_g = sum(len(s["gestures"]) for s in index["scenes"])
    neg_h = sum(n["seconds"] for n in index["negatives"]) / 3600
    print(f"{len(index['scenes'])} scenes ({n_snaps} snaps, {n_g} gestures from {len(index['snap_clips'])} "
          f"held-out clips; {len(index['rejected_snap_clips'])} clips without a whole onset left out), "
          f"{len(index['negatives'])} negative recordings ({neg_h:.3f} h) -> {args.out / INDEX_NAME}")
    return 0
