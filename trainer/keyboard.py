"""Typing on a mechanical keyboard, recorded: an evaluation look-alike from Debian's
`bucklespring-data` (an IBM Model M's buckling-spring keys, one recording of each key going down
and coming up; GPL-2.0-or-later).

Typing is one of the sounds a listener in a study or living room hears for hours, and a buckling
spring's click is sharp and loud. Our data's keyboard recordings are held out in part, but they are
few, quiet and from one room. There is one such keyboard, so its keys are split in two by a hash
of their scan codes (`key_split`): the **eval** half is only ever *played to* a model
(`snap-train lookalikes` adds `negatives/typing.flac` when the package is installed), the **train**
half may be typed into the training negatives (`--typing SECONDS`). A model trained on the one half
has heard this keyboard, if not these keys: the eval half then says less about other keyboards.
Nothing is copied into the repository.

Typing is played the way people type: words of 2-9 keys at 5-9 keys a second, each key's release
60-140 ms after its press, a space between words, phrases of 2-8 words, pauses of 0.5-4 s between
phrases; one keyboard in one place of a simulated room per phrase (`trainer.drumkits`' evaluation
rooms and microphones), over quiet room sound.

    apt-get install -y --no-install-recommends bucklespring-data   # 2.6 MB, /usr/share/buckle/wav
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snap_mqtt.audio_io import AudioFileError, read_audio

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("/usr/share/buckle/wav")
PACKAGE = "bucklespring-data"
LICENCE = "GPL-2.0-or-later"
_NAME = re.compile(r"^([0-9a-f]{2})-([01])\.wav$", re.I)  # <scan code>-<0 down, 1 up>.wav


@dataclass(frozen=True)
class Key:
    code: str  # the key's scan code, as the file names give it
    down: np.ndarray  # mono float32 at the rate asked for
    up: np.ndarray


def key_split(code: str) -> str:
    """"train" or "eval" for a key, by a hash of its scan code: about half each, fixed for good."""
    import hashlib

    return "train" if hashlib.sha1(f"keyboard:{code.lower()}".encode()).digest()[0] < 128 else "eval"


def load_keys(root: Path, rate: int, split: str | None = None) -> list[Key]:
    """Every key with both a press and a release recording under `root`, resampled to `rate`; only
    the keys of `split` ("train" or "eval") when given."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no keyboard recordings here "
                                f"(apt-get install -y --no-install-recommends {PACKAGE})")
    found: dict[str, dict[str, np.ndarray]] = {}
    for f in sorted(root.iterdir()):
        m = _NAME.match(f.name)
        if not m:
            continue
        try:
            a = read_audio(f, rate).samples
        except AudioFileError as exc:
            log.warning("skipped %s: %s", f, exc)
            continue
        found.setdefault(m.group(1).lower(), {})["down" if m.group(2) == "0" else "up"] = a.astype(np.float32)
    return [Key(code, d["down"], d["up"]) for code, d in sorted(found.items())
            if "down" in d and "up" in d and (split is None or key_split(code) == split)]


def typing_track(keys: list[Key], bed: np.ndarray, rate: int, rooms_: list, rng: np.random.Generator,
                 snr_db: tuple[float, float] = (5.0, 30.0)) -> tuple[np.ndarray, list[dict]]:
    """`bed` (room sound at `rate`) with phrases typed on `keys`, each phrase from one place in one
    room at one local SNR (within `snr_db`, +-2 dB per key). Returns (audio, events): one event per
    key press and per release, with its time in seconds."""
    if not keys:
        raise ValueError("no keys to type on")
    quiet = np.asarray(bed, dtype=np.float64)
    out = quiet.copy()
    seconds = len(out) / rate
    events: list[dict] = []
    t = float(rng.uniform(0.5, 2.0))
    while t < seconds - 1.0:
        room = rooms_[int(rng.integers(len(rooms_)))]
        rir = room.snap_rirs[int(rng.integers(len(room.snap_rirs)))]  # the keyboard stays put
        level = float(rng.uniform(*snr_db))
        heard: dict[tuple[str, str], tuple[np.ndarray, int]] = {}  # each stroke as this phrase's mic hears it
        for _ in range(int(rng.integers(2, 9))):  # words
            for _ in range(int(rng.integers(2, 10))):  # keys, then the space bar's turn below
                t = _type_key(out, quiet, keys[int(rng.integers(len(keys)))], t, room, rir, heard, level, rate, rng,
                              events, snr_db)
                if t >= seconds - 1.0:
                    break
            if t >= seconds - 1.0:
                break
            t += float(rng.uniform(0.05, 0.25))  # between words
        t += float(rng.uniform(0.5, 4.0))  # between phrases
    peak = float(np.max(np.abs(out))) if len(out) else 0.0
    return (out * (0.95 / peak) if peak > 0.95 else out).astype(np.float32), events


def _type_key(out: np.ndarray, quiet: np.ndarray, key: Key, t: float, room, rir: np.ndarray,
              heard: dict[tuple[str, str], tuple[np.ndarray, int]], level: float, rate: int,
              rng: np.random.Generator, events: list[dict], snr_db: tuple[float, float]) -> float:
    """One key down and up at `t` (seconds) into `out`, each stroke at its local SNR over the room
    sound alone (`quiet`: not over the keys before it, or a phrase would grow louder key by key);
    `heard` caches each stroke through `rir` and the mic; returns when the next key goes down."""
    from trainer.simroom import place

    hold = float(rng.uniform(0.06, 0.14))
    for what, dry, at_s in (("down", key.down, t), ("up", key.up, t + hold)):
        if (key.code, what) not in heard:
            heard[key.code, what] = _through(room, rir, dry)
        wet, onset = heard[key.code, what]
        at = int(at_s * rate)
        if at - onset < 0 or at - onset + len(wet) > len(out):
            continue  # only whole strokes: the events are the truth
        snr = float(np.clip(level + rng.uniform(-2, 2), *snr_db))
        place(out, wet, onset, at, snr, rate, reference=quiet)
        events.append({"kind": "typing", "key": key.code, "stroke": what, "time": round(at / rate, 4),
                       "snr_db": round(snr, 1)})
    return t + float(rng.uniform(1 / 9, 1 / 5))


def _through(room, rir: np.ndarray, dry: np.ndarray) -> tuple[np.ndarray, int]:
    """A stroke played through `rir` and `room`'s mic, and its onset there."""
    from scipy.signal import fftconvolve

    from snap_mqtt.onset import find_onset

    wet = room.mic(fftconvolve(dry, rir))
    o = find_onset(wet, room.rate)
    return wet, (o.index if o is not None else 0)


def training_tracks(rate: int, seconds: float, beds: list[np.ndarray], root: Path = DEFAULT_ROOT, seed: int = 0,
                    track_seconds: float = 30.0) -> list[np.ndarray]:
    """`seconds` of typing on the train half of the keys in simulated rooms other than the
    evaluation's, over quiet stretches of `beds` (the training part's backgrounds)."""
    from trainer.drumkits import training_track_set

    keys = load_keys(root, rate, "train")
    if not keys:
        raise FileNotFoundError(f"{root}: no training keys (apt-get install -y --no-install-recommends {PACKAGE})")
    return training_track_set(rate, seconds, beds, [seed, 0x7E75], track_seconds,
                              lambda bed, rooms_, rng: typing_track(keys, bed, rate, rooms_, rng)[0])
