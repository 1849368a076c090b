"""Recorded look-alikes from the Hydrogen drum kits Debian packages (`hydrogen-drumkits`).

Our data has no hand claps, knocks or clicks, the look-alikes users meet most. The Hydrogen kits
are real recordings of exactly those: hand claps, side sticks and rim clicks, claves, woodblocks,
a cajon, water glasses, djembe slaps (and, in one kit, finger snaps from another hand and mic).

The kits' licences decide their use, which also keeps training and evaluation apart:

- **train**: kits under licences a GPL-3.0 model may be trained on (GPL-2.0-or-later, CC0,
  CC-BY-3.0). Their claps and clicks become training negatives (`--lookalike-kits`).
- **eval**: the other kits (GPL-2.0-only, CC-BY-SA-3.0) are only ever *played to* the model, in
  `snap-train scenes --lookalikes`, never trained on, never copied into the repository.
  A kit this module does not know is treated as eval.

Hits are played in simulated rooms (`trainer.simroom`'s rooms and microphones), alone or in
series (people clap and knock two or three times in a row, at about the pace of a double snap),
over quiet room sound.

    apt-get install -y --no-install-recommends hydrogen-drumkits   # ~110 MB, /usr/share/hydrogen
"""

from __future__ import annotations

import argparse
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snap_mqtt.audio_io import AudioFileError, read_audio

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("/usr/share/hydrogen/data/drumkits")

# kit folder -> (licence as Debian's copyright file gives it, split)
KIT_LICENCES: dict[str, tuple[str, str]] = {
    "Audiophob": ("CC0-1.0", "train"),
    "ColomboAcousticDrumkit": ("GPL-2.0-or-later", "train"),
    "ElectricEmpireKit": ("GPL-2.0-or-later", "train"),
    "HardElectro1": ("GPL-2.0-or-later", "train"),
    "VariBreaks": ("GPL-2.0-or-later", "train"),
    "rumpf_kit_z01_h2": ("CC-BY-3.0", "train"),
    "BJA_Pacific": ("CC-BY-SA-3.0-US", "eval"),
    "circAfrique v4": ("CC-BY-SA-3.0", "eval"),
    "ForzeeStereo": ("GPL-2.0-only", "eval"),
    "Gimme A Hand 1.0": ("GPL-2.0-only", "eval"),
    "Millo-Drums_v.1": ("GPL-2.0-only", "eval"),
    "Millo_MultiLayered2": ("GPL-2.0-only", "eval"),
    "Millo_MultiLayered3": ("GPL-2.0-only", "eval"),
    "The Black Pearl 1.0": ("GPL-2.0-only", "eval"),
}

# instrument name -> look-alike kind; first match wins. Kicks, toms, hi-hats and cymbals are left
# out (low, or long and hissing: music, which the training has); snares are in (a crack much
# like a snap's).
_KINDS = [
    ("snap", re.compile(r"finger\s*snap", re.I)),
    ("clap", re.compile(r"clap", re.I)),
    ("click", re.compile(r"stick|rim|click", re.I)),
    ("knock", re.compile(r"clave|wood|cajon|bongo|conga|djembe.*(slap|tone)|head hit", re.I)),
    ("clink", re.compile(r"glass|cowbell|bell hit", re.I)),
    ("snare", re.compile(r"snare", re.I)),
]
LOOKALIKE_KINDS = tuple(k for k, _ in _KINDS if k != "snap")


def kind_of(instrument: str) -> str | None:
    for kind, pat in _KINDS:
        if pat.search(instrument):
            return kind
    return None


@dataclass(frozen=True)
class Hit:
    kit: str
    instrument: str
    kind: str  # one of LOOKALIKE_KINDS, or "snap"
    file: Path
    audio: np.ndarray  # mono float32 at the rate asked for, trimmed to 0.5 s


def _instruments(kit_dir: Path) -> list[tuple[str, list[str]]]:
    """(instrument name, sample file names) from a kit's drumkit.xml (namespaced or not)."""
    root = ET.parse(kit_dir / "drumkit.xml").getroot()
    out = []
    for inst in root.iter():
        if not inst.tag.endswith("instrument"):
            continue
        name = next((c.text or "" for c in inst if c.tag.endswith("name")), "")
        files = [e.text for e in inst.iter() if e.tag.endswith("filename") and e.text]
        out.append((name.strip(), files))
    return out


def training_kit_licences(root: Path) -> dict[str, str]:
    """Kit -> licence of the training kits present under `root` (the model's provenance)."""
    if not root.is_dir():
        return {}
    kits = [p.name for p in sorted(root.iterdir()) if (p / "drumkit.xml").is_file()]
    return {k: KIT_LICENCES[k][0] for k in kits if kit_split(k) == "train"}


def kit_split(kit: str) -> str:
    return KIT_LICENCES.get(kit, ("unknown", "eval"))[1]


def load_hits(root: Path, split: str, rate: int, kinds: tuple[str, ...] = LOOKALIKE_KINDS,
              max_seconds: float = 0.5) -> list[Hit]:
    """Every sample of every instrument of the wanted kinds in the kits of `split`."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no Hydrogen drum kits here "
                                "(apt-get install -y --no-install-recommends hydrogen-drumkits)")
    hits = []
    for kit_dir in sorted(p for p in root.iterdir() if (p / "drumkit.xml").is_file()):
        if kit_split(kit_dir.name) != split:
            continue
        try:
            instruments = _instruments(kit_dir)
        except ET.ParseError as exc:
            log.warning("%s: unreadable drumkit.xml (%s), kit skipped", kit_dir, exc)
            continue
        for name, files in instruments:
            kind = kind_of(name)
            if kind not in kinds:
                continue
            for fn in dict.fromkeys(files):  # a sample may serve several layers
                f = kit_dir / fn
                try:
                    a = read_audio(f, rate).samples[: int(max_seconds * rate)]
                except (AudioFileError, FileNotFoundError) as exc:
                    log.warning("skipped %s: %s", f, exc)
                    continue
                peak = float(np.max(np.abs(a))) if len(a) else 0.0
                if peak < 1e-3:
                    continue
                hits.append(Hit(kit_dir.name, name, kind, f, (a / peak).astype(np.float32)))
    return hits


# ---------------------------------------------------------------------------------------------
# look-alike recordings

# how people make each sound: hits per series (drawn uniformly) and the gap between them (s)
_SERIES = {"clap": ((1, 4), (0.22, 0.5)), "knock": ((1, 3), (0.15, 0.4)), "click": ((1, 3), (0.15, 0.5)),
           "clink": ((1, 2), (0.2, 0.5)), "snare": ((1, 2), (0.25, 0.5))}


def rooms(seeds: tuple[int, ...], rate: int) -> list:
    """Simulated rooms and microphones (`trainer.simroom`), all at `rate`."""
    from dataclasses import replace

    from trainer.simroom import SimRoom, draw_person

    out = []
    for s in seeds:
        p = draw_person(s)
        out.append(SimRoom(replace(p, mic_rate=rate, mic_lp_hz=min(p.mic_lp_hz, 0.45 * rate))))
    return out


def lookalike_track(hits: list[Hit], bed: np.ndarray, rate: int, rooms_: list, rng: np.random.Generator,
                    every: tuple[float, float] = (1.5, 4.0), snr_db: tuple[float, float] = (5.0, 30.0)
                    ) -> tuple[np.ndarray, list[dict]]:
    """`bed` (room sound at `rate`) with series of hits played from random places in random rooms
    every `every` seconds, at a local SNR in `snr_db`. Returns (audio, events)."""
    from trainer.simroom import place

    by_kind: dict[str, list[Hit]] = {}
    for h in hits:
        by_kind.setdefault(h.kind, []).append(h)
    if not by_kind:
        raise ValueError("no look-alike hits to play")
    kinds = sorted(by_kind)
    out = np.asarray(bed, dtype=np.float64).copy()
    events: list[dict] = []
    t = rng.uniform(*every)
    seconds = len(out) / rate
    while t < seconds - 0.6:
        kind = kinds[int(rng.integers(len(kinds)))]
        (lo, hi), gap = _SERIES.get(kind, ((1, 2), (0.2, 0.5)))
        reps = int(rng.integers(lo, hi + 1))
        hit = by_kind[kind][int(rng.integers(len(by_kind[kind])))]
        room = rooms_[int(rng.integers(len(rooms_)))]
        level = rng.uniform(*snr_db)
        at_s = t
        for _ in range(reps):
            if at_s > seconds - 0.3:
                break
            wet, o = _wet(hit, room, rng, (0.92, 1.08))  # another hand, another stick
            at = int(at_s * rate)
            place(out, wet, o, at, float(np.clip(level + rng.uniform(-3, 3), *snr_db)), rate)
            events.append({"kind": kind, "kit": hit.kit, "instrument": hit.instrument, "time": round(at / rate, 4)})
            at_s += rng.uniform(*gap)
        t = at_s + rng.uniform(*every)
    peak = float(np.max(np.abs(out))) if len(out) else 0.0
    return (out * (0.95 / peak) if peak > 0.95 else out).astype(np.float32), events


# ---------------------------------------------------------------------------------------------
# `snap-train lookalikes`: an evaluation set in `snap-train scenes`' format

EVAL_ROOM_SEEDS = (11, 12, 13, 14)  # trainer.simroom persons whose rooms and mics play the eval kits
TRAIN_ROOM_SEEDS = (101, 102, 103, 104)  # ...and the training kits: never the same room


def _wet(hit: Hit, room, rng: np.random.Generator, speed_range: tuple[float, float]) -> tuple[np.ndarray, int]:
    """A hit played from a random place in `room`, heard by its mic: (audio, onset found in it)."""
    from scipy.signal import fftconvolve, resample_poly

    from snap_mqtt.onset import find_onset

    speed = rng.uniform(*speed_range)
    dry = resample_poly(hit.audio, 100, int(round(100 * speed)))
    wet = room.mic(fftconvolve(dry, room.snap_rirs[int(rng.integers(len(room.snap_rirs)))])).astype(np.float32)
    o = find_onset(wet, room.rate)
    return wet, (o.index if o is not None else 0)


def other_hand_scene(snaps: list[Hit], bed: np.ndarray, rate: int, rooms_: list, rng: np.random.Generator,
                     params) -> tuple[np.ndarray, list[dict], list[dict]]:
    """A scene (`trainer.scenes` timing and SNR definition) whose snaps are the kits' finger snaps:
    another hand and microphone than any in our data."""
    from trainer.scenes import add_at_snr, gesture_times, gesture_truth

    mix = np.asarray(bed, dtype=np.float64).copy()
    room = rooms_[int(rng.integers(len(rooms_)))]  # one person snapping in one room per scene
    placed: list[dict] = []
    gestures: list[dict] = []
    for g, times in enumerate(gesture_times(rng, params)):
        want = float(rng.uniform(params.snr_min_db, params.snr_max_db))
        for t in times:
            wet, o = _wet(snaps[int(rng.integers(len(snaps)))], room, rng, (0.97, 1.03))
            pos = int(round(t * rate))
            snr_db = float(np.clip(want + rng.uniform(-2, 2), params.snr_min_db, params.snr_max_db))
            _, snr = add_at_snr(mix, bed, wet, o, pos, snr_db, rate)
            placed.append({"time": round(pos / rate, 6), "clip": "hydrogen:Gimme A Hand 1.0/Finger Snaps",
                           "snr_db": round(snr, 2), "gesture": g})
        gestures.append(gesture_truth(times, rate))
    return mix.astype(np.float32), placed, gestures


def build_lookalike_set(data: Path, out: Path, kits: Path = DEFAULT_ROOT, seed: int = 0,
                        seconds_per_kind: float = 600.0, n_scenes: int = 12, rate: int = 16000,
                        background_split: str = "eval", keyboard: Path | None = None) -> dict:
    """Evaluation recordings from the eval kits (never trained on), in `snap-train scenes`' format:
    negatives/<kind>.flac with claps, clicks, knocks, clinks and snares in simulated rooms over quiet
    held-out room sound, negatives/bed.flac (the same kind of bed, no hits: the control), and
    scenes of another hand's finger snaps (`snap-train evaluate --scenes OUT`); with the keyboard
    recordings (`trainer.keyboard`; `keyboard`, default its package's folder) also
    negatives/typing.flac, drawn from a random stream of its own so that the rest stays as before."""
    from snap_mqtt.audio_io import write_audio_atomic
    from trainer import __version__
    from trainer.cli import UsageError
    from trainer.scenes import INDEX_NAME, SceneParams, _Cache, collect_inputs, make_bed, write_index

    if (out / INDEX_NAME).exists():
        raise UsageError(f"{out / INDEX_NAME} exists: nothing is overwritten; choose another --out")
    try:
        hits = load_hits(kits, "eval", rate, kinds=LOOKALIKE_KINDS + ("snap",))
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    snaps = [h for h in hits if h.kind == "snap"]
    kinds = sorted({h.kind for h in hits} - {"snap"})
    if not kinds or not snaps:
        raise UsageError(f"{kits}: no evaluation kit with finger snaps and look-alikes "
                         "(the Debian hydrogen-drumkits package has them)")
    inputs = collect_inputs(data, background_split, "test")
    rng = np.random.default_rng([seed, 0x100C])
    cache = _Cache()
    rooms_ = rooms(EVAL_ROOM_SEEDS, rate)
    (out / "scenes").mkdir(parents=True, exist_ok=True)
    (out / "negatives").mkdir(parents=True, exist_ok=True)

    def quiet_bed(seconds: float) -> np.ndarray:
        """Held-out room sound of every kind, turned down to a quiet room (-45..-35 dBFS), plus a
        microphone noise floor."""
        bed, _ = make_bed(inputs.backgrounds, rate, seconds, rng, cache)
        bed = bed * (10 ** (rng.uniform(-45, -35) / 20) / max(float(np.sqrt(np.mean(bed ** 2))), 1e-9))
        return (bed + rng.standard_normal(len(bed)) * 10 ** (-70 / 20)).astype(np.float32)

    negatives = []
    for kind in ["bed", *kinds]:
        bed = quiet_bed(seconds_per_kind)
        if kind == "bed":
            x, events = bed, []
        else:
            x, events = lookalike_track([h for h in hits if h.kind == kind], bed, rate, rooms_, rng)
        name = f"negatives/{kind}.flac"
        write_audio_atomic(out / name, x, rate, subtype="PCM_24")
        negatives.append({"file": name, "kind": kind if kind == "bed" else f"{kind}s", "sample_rate": rate,
                          "seconds": len(x) / rate, "hits": len(events),
                          "sources": sorted({f"{e['kit']}/{e['instrument']}" for e in events}), "events": events})
        log.info("%s: %d hits", name, len(events))
    params = SceneParams()
    scenes = []
    for i in range(n_scenes):
        audio, placed, gestures = other_hand_scene(snaps, quiet_bed(params.seconds), rate, rooms_, rng, params)
        name = f"scenes/other-hand-{i:03d}.flac"
        write_audio_atomic(out / name, audio, rate, subtype="PCM_24")
        scenes.append({"file": name, "sample_rate": rate, "seconds": len(audio) / rate, "kind": "other hand",
                       "snaps": placed, "gestures": gestures})
    typing = _typing_negative(out, keyboard, seconds_per_kind, rate, rooms_, quiet_bed, seed)
    if typing is not None:
        negatives.append(typing)
    index = {"format": "snap-mqtt-scenes", "version": 1, "trainer_version": __version__, "seed": seed,
             "lookalikes": {"kits": str(kits), "split": "eval",
                            "kit_licences": {k: v[0] for k, v in KIT_LICENCES.items() if v[1] == "eval"},
                            "room_seeds": list(EVAL_ROOM_SEEDS),
                            "keyboard": None if typing is None else typing["keyboard"]},
             "scenes": scenes, "negatives": negatives}
    return write_index(out, index)


def _typing_negative(out: Path, keyboard: Path | None, seconds: float, rate: int, rooms_: list,
                     quiet_bed, seed: int) -> dict | None:
    """negatives/typing.flac (trainer.keyboard), or None with a warning when the recordings are absent."""
    from snap_mqtt.audio_io import write_audio_atomic
    from trainer import keyboard as kb

    root = kb.DEFAULT_ROOT if keyboard is None else keyboard
    try:
        keys = kb.load_keys(root, rate, "eval")
    except FileNotFoundError as exc:
        log.warning("typing not measured: %s", exc)
        return None
    if not keys:
        log.warning("typing not measured: %s holds no key recordings", root)
        return None
    rng = np.random.default_rng([seed, 0x7E7])
    bed = quiet_bed(seconds)  # drawn last from the set's stream, so the rest of the set stays as it was
    x, events = kb.typing_track(keys, bed, rate, rooms_, rng)
    name = "negatives/typing.flac"
    write_audio_atomic(out / name, x, rate, subtype="PCM_24")
    log.info("%s: %d key strokes", name, len(events))
    return {"file": name, "kind": "typing", "sample_rate": rate, "seconds": len(x) / rate, "hits": len(events),
            "sources": [f"{kb.PACKAGE}: {len(keys)} keys (the eval half)"], "events": events,
            "keyboard": {"package": kb.PACKAGE, "licence": kb.LICENCE, "folder": str(root), "keys": len(keys),
                         "split": "eval"}}


# ---------------------------------------------------------------------------------------------
# CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True,
                        help="data folder (its held-out backgrounds make the quiet room sound)")
    parser.add_argument("--out", type=Path, required=True, help="new folder for scenes, negatives and scenes.json")
    parser.add_argument("--kits", type=Path, default=DEFAULT_ROOT, help="Hydrogen drum kits (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same recordings (default 0)")
    parser.add_argument("--seconds", type=float, default=600.0,
                        help="seconds of each kind of look-alike, and of the bed alone (default 600)")
    parser.add_argument("--scenes", type=int, default=12, help="30 s scenes of another hand's snaps (default 12)")
    parser.add_argument("--background-split", choices=["eval", "all"], default="eval",
                        help="which backgrounds make the room sound: held out of training (default) or all")
    parser.add_argument("--keyboard", type=Path, default=None,
                        help="buckling-spring keyboard recordings for negatives/typing.flac "
                             "(default: /usr/share/buckle/wav, Debian's bucklespring-data; absent: typing not measured)")


def run(args: argparse.Namespace) -> int:
    from trainer.cli import UsageError

    if args.seconds < 10 or args.scenes < 1:
        raise UsageError("--seconds must be >= 10 and --scenes >= 1")
    index = build_lookalike_set(args.data, args.out, args.kits, args.seed, args.seconds, args.scenes,
                                background_split=args.background_split, keyboard=args.keyboard)
    for n in index["negatives"]:
        print(f"{n['file']}: {n['seconds']:.0f} s, {n['hits']} hits")
    n_snaps = sum(len(s["snaps"]) for s in index["scenes"])
    print(f"{len(index['scenes'])} scenes of another hand ({n_snaps} snaps) -> {args.out / 'scenes.json'}\n"
          f"evaluate: snap-train evaluate --scenes {args.out} --baselines none")
    return 0


# ---------------------------------------------------------------------------------------------
# training negatives

def training_tracks(rate: int, seconds: float, beds: list[np.ndarray], kits: Path = DEFAULT_ROOT, seed: int = 0,
                    track_seconds: float = 30.0) -> list[np.ndarray]:
    """`seconds` of the train kits' look-alikes (never the eval kits') in simulated rooms other than
    the evaluation's, over quiet stretches of `beds` (the training part's backgrounds)."""
    hits = load_hits(kits, "train", rate)
    if not hits:
        raise FileNotFoundError(f"{kits}: no training kit with look-alikes (kits: {', '.join(k for k, v in KIT_LICENCES.items() if v[1] == 'train')})")
    return training_track_set(rate, seconds, beds, [seed, 0x7EA1], track_seconds,
                              lambda bed, rooms_, rng: lookalike_track(hits, bed, rate, rooms_, rng, every=(0.8, 2.5))[0])


def training_track_set(rate: int, seconds: float, beds: list[np.ndarray], seed: list[int], track_seconds: float,
                       make: Callable[[np.ndarray, list, np.random.Generator], np.ndarray]) -> list[np.ndarray]:
    """`seconds` of training tracks, `track_seconds` each: `make(bed, rooms, rng)` over a quiet
    stretch of `beds` (at least a second long), in the training rooms (never the evaluation's)."""
    beds = [b for b in beds if len(b) >= rate]
    if not beds:
        raise ValueError("no background audio to play the look-alikes over")
    rng = np.random.default_rng(seed)
    rooms_ = rooms(TRAIN_ROOM_SEEDS, rate)
    n = int(track_seconds * rate)
    return [make(quiet_stretch(beds, n, rng), rooms_, rng) for _ in range(max(1, int(round(seconds / track_seconds))))]


def quiet_stretch(beds: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of random stretches of `beds`, joined, turned down to a quiet room (-45..-30
    dBFS), plus a microphone noise floor: what training look-alikes are played over."""
    parts, total = [], 0
    while total < n:
        b = beds[int(rng.integers(len(beds)))]
        s0 = int(rng.integers(0, max(1, len(b) - n)))
        parts.append(b[s0:s0 + n - total])
        total += len(parts[-1])
    bed = np.concatenate(parts).astype(np.float64)
    bed *= 10 ** (rng.uniform(-45, -30) / 20) / max(float(np.sqrt(np.mean(bed ** 2))), 1e-9)
    bed += rng.standard_normal(n) * 10 ** (rng.uniform(-72, -62) / 20)
    return bed
