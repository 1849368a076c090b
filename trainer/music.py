"""Hours of recorded music from Debian's game-music packages, played in simulated rooms.

A radio or TV plays for hours in many living rooms, and every drum hit in it is a chance to toggle
a light. Our data has five music recordings (six minutes, three of them held out), far too little
to say how often a model fires on music per hour. Debian packages hours of real soundtracks
(orchestral, rock, electronic, ambient, jazz-like game music) as plain Ogg / Opus / MP3 files.

As with the drum kits (`trainer.drumkits`), licences decide the use, which also keeps training
and evaluation apart:

- **train**: packages whose music is GPL-2.0-or-later or GPL-3.0-or-later (a GPL-3.0 model may be
  trained on it);
- **eval**: the rest (CC-BY-SA-3.0, GPL-2.0 as Debian states it, a freeware licence): only ever
  *played to* a model by `snap-train music`, never trained on, never copied into the repository.

Excerpts of random tracks are played from the background position of simulated rooms and
microphones (`trainer.simroom`; the drum kits' evaluation rooms) at the level of a radio in the
room, then joined into one long negative recording per package; scenes put our test-split snap
clips over such music at 3-30 dB local SNR (`snap-train scenes`' definitions), so one folder
answers both "how often does music fire it" and "does it hear a snap over music".

    apt-get install -y warzone2100-music wesnoth-1.16-music drascula-music hyperrogue-music \\
        singularity-music hedgewars-data                    # evaluation: ~700 MB, 10.0 h, no dependencies
    apt-get install -y planetblupi-music-ogg asc-music freedroidrpg-data extremetuxracer-data \\
        lincity-ng-data xmoto-data                          # training: ~490 MB, 4.3 h
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snap_mqtt.audio_io import AudioFileError, read_audio

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".ogg", ".opus", ".mp3", ".flac", ".wav")


@dataclass(frozen=True)
class MusicPackage:
    name: str  # the Debian package
    folder: Path  # where it installs its music
    licence: str  # of the music, as the package's copyright file gives it
    split: str  # "train" or "eval"


PACKAGES: tuple[MusicPackage, ...] = (
    MusicPackage("planetblupi-music-ogg", Path("/usr/share/planetblupi/music"), "GPL-3.0-or-later", "train"),
    MusicPackage("asc-music", Path("/usr/share/games/asc/music"), "GPL-2.0-or-later", "train"),
    MusicPackage("freedroidrpg-data", Path("/usr/share/freedroidrpg/data/sound/music"), "GPL-2.0-or-later", "train"),
    MusicPackage("extremetuxracer-data", Path("/usr/share/games/etr/music"), "GPL-2.0-or-later", "train"),
    MusicPackage("lincity-ng-data", Path("/usr/share/games/lincity-ng/music"), "GPL-2.0-or-later", "train"),
    MusicPackage("xmoto-data", Path("/usr/share/games/xmoto/Textures/Musics"), "GPL-2.0-or-later", "train"),
    MusicPackage("warzone2100-music", Path("/usr/share/games/warzone2100/music"),
                 "GPL-2.0-or-later and CC-BY-SA-3.0 (Debian's copyright file lists both)", "eval"),
    MusicPackage("wesnoth-1.16-music", Path("/usr/share/games/wesnoth/1.16/data/core/music"), "GPL-2.0", "eval"),
    MusicPackage("drascula-music", Path("/usr/share/scummvm/drascula/audio"), "Drascula-License (freeware)", "eval"),
    MusicPackage("hyperrogue-music", Path("/usr/share/hyperrogue/music"), "CC-BY-SA-3.0 and GPL-2.0-or-later", "eval"),
    MusicPackage("singularity-music", Path("/usr/share/games/singularity/music"), "CC-BY-SA-3.0", "eval"),
    MusicPackage("hedgewars-data", Path("/usr/share/games/hedgewars/Data/Music"), "GPL-2.0", "eval"),
)

INSTALL_HINT = "apt-get install -y " + " ".join(p.name for p in PACKAGES if p.split == "eval")
EXCERPT_S = (30.0, 90.0)  # one excerpt of one track: long enough to be music, short enough for variety
LEVEL_DBFS = (-35.0, -18.0)  # a radio or TV in the room, at the mic (RMS); the data's music files: -24..-17 dBFS


def installed(split: str, root: Path = Path("/"), packages: tuple[MusicPackage, ...] = PACKAGES
              ) -> dict[str, list[Path]]:
    """Package name -> its music files (sorted), for the installed packages of `split`. `root`: where
    the packages' folders are (`/`, or a folder that `dpkg-deb -x PACKAGE.deb ROOT` unpacked into)."""
    out: dict[str, list[Path]] = {}
    for p in packages:
        folder = Path(root) / p.folder.relative_to("/")
        if p.split != split or not folder.is_dir():
            continue
        files = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
        if files:
            out[p.name] = files
    return out


def excerpt(path: Path, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A random 30-90 s stretch of one track (the whole track when shorter), mono at `rate`."""
    x = read_audio(path, rate).samples
    n = int(rng.uniform(*EXCERPT_S) * rate)
    start = int(rng.integers(0, max(1, len(x) - n)))
    return x[start:start + n]


def played(x: np.ndarray, room, rng: np.random.Generator) -> np.ndarray:
    """Music `x` played from the room's background position, heard by its mic, at a radio's level,
    over the mic's noise floor."""
    y = room.ambient(np.asarray(x, dtype=np.float64)).astype(np.float64)
    rms = float(np.sqrt(np.mean(y ** 2))) if len(y) else 0.0
    y *= 10 ** (rng.uniform(*LEVEL_DBFS) / 20) / max(rms, 1e-9)
    return (y + room.noise_floor(len(y), rng)).astype(np.float32)


def music_track(files: list[Path], seconds: float, rate: int, rooms_: list, rng: np.random.Generator
                ) -> tuple[np.ndarray, list[dict]]:
    """`seconds` of excerpts of `files` (random tracks, each excerpt in a random room), joined with
    short crossfades. Unreadable files are skipped with a warning. Returns (audio, sources)."""
    from trainer.scenes import XFADE_S, join

    n = int(round(seconds * rate))
    parts: list[np.ndarray] = []
    sources: list[dict] = []
    total, bad = 0, set()
    fade = int(XFADE_S * rate)
    while total < n:
        if len(bad) == len(files):
            raise AudioFileError(f"{files[0].parent}: none of its {len(files)} music files could be read "
                                 "as a track of a second or more")
        f = files[int(rng.integers(len(files)))]
        if f in bad:
            continue
        try:
            x = excerpt(f, rate, rng)
        except AudioFileError as exc:
            log.warning("skipped: %s", exc)
            bad.add(f)
            continue
        if len(x) < rate:  # a jingle: too short to matter (and never drawn again)
            bad.add(f)
            continue
        k = int(rng.integers(len(rooms_)))
        overlap = fade if parts else 0  # each join's crossfade overlaps the parts
        parts.append(played(x, rooms_[k], rng)[: n - total + overlap])
        sources.append({"file": str(f), "seconds": round(len(parts[-1]) / rate, 2), "room": k})
        total += len(parts[-1]) - overlap
    parts[0] = parts[0].copy()
    parts[0][:fade] *= np.linspace(0.0, 1.0, len(parts[0][:fade]), dtype=np.float32)  # no hard start
    y = join(parts, rate)[:n]
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    return (y * (0.95 / peak) if peak > 0.95 else y).astype(np.float32), sources


def music_scene(bed: np.ndarray, inputs, rate: int, rng: np.random.Generator, cache, params
                ) -> tuple[np.ndarray, list[dict], list[dict]]:
    """Our held-out snap clips over music, `snap-train scenes`' timing and SNR definition."""
    from trainer.scenes import add_at_snr, faded, gesture_times, gesture_truth

    mix = np.asarray(bed, dtype=np.float64).copy()
    placed: list[dict] = []
    gestures: list[dict] = []
    for g, times in enumerate(gesture_times(rng, params)):
        for t in times:
            clip_meta = inputs.snaps[int(rng.integers(len(inputs.snaps)))]
            clip = faded(cache.get(clip_meta.path, rate), rate)
            pos = int(round(t * rate))
            want = float(rng.uniform(params.snr_min_db, params.snr_max_db))
            _, snr = add_at_snr(mix, bed, clip, int(round(clip_meta.onset_s * rate)), pos, want, rate)
            placed.append({"time": round(pos / rate, 6), "clip": clip_meta.name, "snr_db": round(snr, 2), "gesture": g})
        gestures.append(gesture_truth(times, rate))
    return mix.astype(np.float32), placed, gestures


def build_music_set(data: Path, out: Path, seconds_per_package: float = 1800.0, n_scenes: int = 24,
                    seed: int = 0, rate: int = 16000, root: Path = Path("/"),
                    packages: tuple[str, ...] | None = None) -> dict:
    """Evaluation recordings from the eval packages (never trained on), in `snap-train scenes`'
    format: negatives/music-<package>.flac, and scenes of our test-split snaps over such music.
    `packages`: only these evaluation packages (None: every one installed)."""
    from snap_mqtt.audio_io import write_audio_atomic
    from trainer import __version__
    from trainer.cli import UsageError
    from trainer.drumkits import EVAL_ROOM_SEEDS, rooms
    from trainer.scenes import INDEX_NAME, SceneParams, _Cache, collect_inputs, write_index

    if (out / INDEX_NAME).exists():
        raise UsageError(f"{out / INDEX_NAME} exists: nothing is overwritten; choose another --out")
    music = installed("eval", root)
    if packages is not None:
        known = {p.name for p in PACKAGES if p.split == "eval"}
        if set(packages) - known:
            raise UsageError(f"--packages: not an evaluation package: {', '.join(sorted(set(packages) - known))} "
                             f"(evaluation packages: {', '.join(sorted(known))})")
        music = {k: v for k, v in music.items() if k in packages}
    if not music:
        raise UsageError(f"no evaluation music under {root} ("
                         + ", ".join(p.name for p in PACKAGES if p.split == "eval") + f"): {INSTALL_HINT}")
    inputs = collect_inputs(data, "all", "test")  # (only its snap clips are used)
    if not inputs.snaps:
        raise UsageError(f"{data}: no test-split snap clips to place over the music")
    rng = np.random.default_rng([seed, 0x3051C])
    rooms_ = rooms(EVAL_ROOM_SEEDS, rate)
    cache = _Cache()
    (out / "scenes").mkdir(parents=True, exist_ok=True)
    (out / "negatives").mkdir(parents=True, exist_ok=True)
    negatives = []
    for name, files in music.items():
        x, sources = music_track(files, seconds_per_package, rate, rooms_, rng)
        rel = f"negatives/music-{name}.flac"
        write_audio_atomic(out / rel, x, rate, subtype="PCM_24")
        negatives.append({"file": rel, "kind": f"music: {name}", "sample_rate": rate, "seconds": len(x) / rate,
                          "tracks": len({s['file'] for s in sources}), "sources": sources})
        log.info("%s: %.0f s from %d tracks", rel, len(x) / rate, negatives[-1]["tracks"])
    params = SceneParams()
    scenes = []
    names = sorted(music)
    for i in range(n_scenes):
        name = names[i % len(names)]
        bed, _ = music_track(music[name], params.seconds, rate, rooms_, rng)
        audio, placed, gestures = music_scene(bed, inputs, rate, rng, cache, params)
        rel = f"scenes/music-{i:03d}.flac"
        write_audio_atomic(out / rel, audio, rate, subtype="PCM_24")
        scenes.append({"file": rel, "sample_rate": rate, "seconds": len(audio) / rate, "kind": f"music: {name}",
                       "snaps": placed, "gestures": gestures})
    index = {"format": "snap-mqtt-scenes", "version": 1, "trainer_version": __version__, "seed": seed,
             "data": str(data),
             "music": {"split": "eval", "root": str(root), "packages": {p.name: p.licence for p in PACKAGES if p.name in music},
                       "room_seeds": list(EVAL_ROOM_SEEDS), "level_dbfs": list(LEVEL_DBFS)},
             "scenes": scenes, "negatives": negatives}
    return write_index(out, index)


# ---------------------------------------------------------------------------------------------
# CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="data folder (its test-split snap clips go over the music)")
    parser.add_argument("--out", type=Path, required=True, help="new folder for scenes, negatives and scenes.json")
    parser.add_argument("--seconds", type=float, default=1800.0,
                        help="seconds of music from each installed evaluation package (default 1800)")
    parser.add_argument("--scenes", type=int, default=24, help="30 s scenes of snaps over music (default 24)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same recordings (default 0)")
    parser.add_argument("--packages", default=None,
                        help="comma list of evaluation packages to play (default: every one installed)")
    parser.add_argument("--root", type=Path, default=Path("/"),
                        help="where the music packages are installed (default /; or a folder that "
                             "`dpkg-deb -x PACKAGE.deb FOLDER` unpacked them into, without root)")


def run(args: argparse.Namespace) -> int:
    from trainer.cli import UsageError

    if args.seconds < 10 or args.scenes < 1:
        raise UsageError("--seconds must be >= 10 and --scenes >= 1")
    packages = tuple(p.strip() for p in args.packages.split(",") if p.strip()) if args.packages else None
    index = build_music_set(args.data, args.out, args.seconds, args.scenes, args.seed, root=args.root,
                            packages=packages)
    for n in index["negatives"]:
        print(f"{n['file']}: {n['seconds']:.0f} s from {n['tracks']} tracks")
    hours = sum(n["seconds"] for n in index["negatives"]) / 3600
    n_snaps = sum(len(s["snaps"]) for s in index["scenes"])
    print(f"{hours:.2f} h of music, {len(index['scenes'])} scenes of snaps over music ({n_snaps} snaps) -> "
          f"{args.out / 'scenes.json'}\nevaluate: snap-train evaluate --scenes {args.out} --baselines none")
    return 0


# ---------------------------------------------------------------------------------------------
# training negatives

TRAIN_HINT = "apt-get install -y " + " ".join(p.name for p in PACKAGES if p.split == "train")


def training_licences(root: Path = Path("/")) -> dict[str, str]:
    """The installed training packages and their music's licences (recorded in a model's metadata)."""
    return {p.name: p.licence for p in PACKAGES if p.name in installed("train", root)}


def training_tracks(rate: int, seconds: float, root: Path = Path("/"), seed: int = 0,
                    track_seconds: float = 60.0) -> list[np.ndarray]:
    """`seconds` of the training packages' music (never the evaluation packages') played in
    simulated rooms other than the evaluation's, as `track_seconds` tracks."""
    from trainer.drumkits import TRAIN_ROOM_SEEDS, rooms

    music = installed("train", root)
    if not music:
        raise FileNotFoundError(f"no training music under {root}: {TRAIN_HINT}")
    files = [f for fs in music.values() for f in fs]
    rng = np.random.default_rng([seed, 0x3051D])
    rooms_ = rooms(TRAIN_ROOM_SEEDS, rate)
    return [music_track(files, track_seconds, rate, rooms_, rng)[0]
            for _ in range(max(1, int(round(seconds / track_seconds))))]
