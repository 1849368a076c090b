"""Training data: scan a data folder into a manifest, load the clips, and synthesise labelled windows.

Layout (as ../shared/data): `snap/`, `no_snap/`, optional `background/<kind>/...`; any sample rate,
mono or stereo, WAV/FLAC/OGG. Clips are split by `trainer.splits.split_of` (hash of the file name);
background files kept for evaluation (`background_split(...) == "eval"`) are never loaded. Training
backgrounds are split too: long files by time (first 70 % train, next 15 % val, last 15 % test),
short ones by file name, so validation and test windows never reuse training audio.

A window is positive when a snap onset lies in [onset_min, onset_max] (samples from the window's
start). Negatives: no_snap clips, background, and snaps whose onset lies clearly outside that region
(just starting, or long gone), so the model fires once, soon after a snap starts.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from snap_mqtt.audio_io import AUDIO_SUFFIXES, AudioFileError, is_silent, read_audio
from snap_mqtt.onset import snap_onset
from trainer import augment as aug
from trainer.splits import background_kind, background_split, split_of

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
LONG_BACKGROUND_S = 20.0  # background files at least this long are split by time, not by name


def _usage_error(msg: str) -> Exception:
    from trainer.cli import UsageError

    return UsageError(msg)


# ---------------------------------------------------------------- manifest


def scan_data(data_dir: str | os.PathLike[str]) -> "pd.DataFrame":
    """One row per file under snap/, no_snap/ and background/: path (relative), label, split, kind.

    Raises UsageError for a missing folder or an empty class. Files with unsupported suffixes are
    warned about by name and left out."""
    import pandas as pd

    root = Path(data_dir)
    if not root.is_dir():
        raise _usage_error(f"data folder {root} does not exist (expected snap/, no_snap/ and optionally background/)")
    rows = []
    for label in ("snap", "no_snap", "background"):
        folder = root / label
        if not folder.is_dir():
            if label == "background":
                continue
            raise _usage_error(f"{folder}: missing class folder '{label}/' in data folder {root}")
        for p in sorted(q for q in folder.rglob("*") if q.is_file()):
            rel = p.relative_to(root).as_posix()
            if p.name.startswith("."):
                continue
            if p.suffix.lower() not in AUDIO_SUFFIXES:
                log.warning("%s: skipped: unsupported file type %r (use WAV, FLAC or OGG)", p, p.suffix)
                continue
            if label == "background":
                part = background_split(rel)
                rows.append(dict(path=rel, label=label, split=part, kind=background_kind(rel)))
            else:
                rows.append(dict(path=rel, label=label, split=split_of(p.name), kind=label))
    df = pd.DataFrame(rows, columns=["path", "label", "split", "kind"])
    for label in ("snap", "no_snap"):
        if not (df["label"] == label).any():
            raise _usage_error(f"{root / label}: no audio files in class '{label}' (need WAV, FLAC or OGG clips)")
    return df


# ---------------------------------------------------------------- loaded clips


@dataclass
class SnapClip:
    name: str
    samples: np.ndarray  # mono float32 at the model rate
    onset: int  # onset sample (snap_mqtt.onset.snap_onset)


@dataclass
class ClipBank:
    """Everything the window sampler draws from, per split, at the model's sample rate."""

    sample_rate: int
    snaps: dict[str, list[SnapClip]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    no_snaps: dict[str, list[np.ndarray]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    backgrounds: dict[str, list[np.ndarray]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    background_kinds: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> dict:
        out: dict = {"sample_rate": self.sample_rate}
        for s in SPLITS:
            out[s] = {
                "snap": len(self.snaps[s]),
                "no_snap": len(self.no_snaps[s]),
                "background_seconds": round(sum(len(b) for b in self.backgrounds[s]) / self.sample_rate, 1),
                "background_kinds": dict(Counter(self.background_kinds[s])),
            }
        out["skipped_files"] = len(self.skipped)
        return out


def load_clip_bank(manifest: "pd.DataFrame", data_dir: str | os.PathLike[str], sample_rate: int,
                   min_snap_onset: int = 0, progress: Callable[[Iterable], Iterable] | None = None) -> ClipBank:
    """Read every usable file of the manifest. Adds columns `status`, `onset`, `seconds`, `rate`
    to the manifest in place. Corrupt, empty, truncated, unsupported, silent files and snap clips
    without a clear snap are warned about by name and skipped."""
    root = Path(data_dir)
    bank = ClipBank(sample_rate=sample_rate)
    status, onsets, seconds = [], [], []
    rows = list(manifest.itertuples(index=False))
    it = progress(rows) if progress else rows
    for row in it:
        path = root / row.path
        st, on, sec = "ok", -1, 0.0
        if row.label == "background" and row.split == "eval":
            status.append("eval-only")
            onsets.append(-1)
            seconds.append(0.0)
            continue
        try:
            a = read_audio(path, sample_rate)
            truncated = _truncation(path, a.seconds)
            if truncated:
                st, a = f"skipped: {path}: truncated ({truncated})", None
        except AudioFileError as exc:
            st = f"skipped: {exc}"
            a = None
        if a is not None:
            x = a.samples
            sec = a.seconds
            if is_silent(x):
                st = f"skipped: {path}: silent (digital silence)"
            elif row.label == "snap":
                o = snap_onset(x, sample_rate)
                if o is None:
                    st = f"skipped: {path}: no clear snap transient in a snap clip (check its label)"
                else:
                    on = int(o)
                    if on < min_snap_onset:
                        st = "ok: onset at the clip's edge (used as a late-snap negative only)"
                    bank.snaps[row.split].append(SnapClip(Path(row.path).name, x, on))
            elif row.label == "no_snap":
                bank.no_snaps[row.split].append(x)
            else:
                _add_background(bank, row.path, x, row.kind)
        if st.startswith("skipped"):
            reason = st[len("skipped: "):]
            log.warning("%s", reason if str(path) in reason else f"{path}: {reason}")
            bank.skipped.append((row.path, reason))
        status.append(st)
        onsets.append(on)
        seconds.append(round(sec, 4))
    manifest["status"] = status
    manifest["onset"] = onsets
    manifest["seconds"] = seconds
    for label, store in (("snap", bank.snaps), ("no_snap", bank.no_snaps)):
        if not any(store[s] for s in SPLITS):
            raise _usage_error(f"{root / label}: no usable clips in class '{label}' (all were skipped)")
    return bank


def _truncation(path: Path, seconds_read: float) -> str:
    """'' when the file holds as much audio as its header promises, else what is missing (a WAV cut
    short by a crash or a full disk reads without error, just shorter)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # read_audio could read it; a header libsndfile cannot describe is not our case
        return ""
    promised = info.frames / info.samplerate if info.samplerate else 0.0
    if promised - seconds_read > 0.002:
        return f"header promises {promised:.3f} s, file holds {seconds_read:.3f} s"
    if path.suffix.lower() == ".wav":
        return _wav_truncation(path)
    return ""


def _wav_truncation(path: Path) -> str:
    """libsndfile quietly shortens a WAV whose data chunk is cut off; its RIFF header still says
    how many bytes of audio there should be."""
    import struct

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return ""
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, clen = struct.unpack("<4sI", f.read(8))
            if cid == b"data":
                have = size - pos - 8
                if clen != 0xFFFFFFFF and clen > have:
                    return f"WAV header promises {clen} bytes of audio, file holds {have}"
                return ""
            pos += 8 + clen + (clen & 1)
    return ""


def _add_background(bank: ClipBank, rel: str, x: np.ndarray, kind: str) -> None:
    n = len(x)
    if n / bank.sample_rate >= LONG_BACKGROUND_S:
        a, b = int(0.70 * n), int(0.85 * n)
        for split, part in (("train", x[:a]), ("val", x[a:b]), ("test", x[b:])):
            bank.backgrounds[split].append(part)
            bank.background_kinds[split].append(kind)
    else:
        split = split_of(Path(rel).name)
        bank.backgrounds[split].append(x)
        bank.background_kinds[split].append(kind)


def add_speed_variants(bank: ClipBank, factors: tuple[float, ...], kinds: tuple[str, ...] = ("speech", "music"),
                       split: str = "train") -> int:
    """Add sped-up and slowed-down copies of a part's speech and music backgrounds (`augment.speed`):
    the data holds few voices and tunes, and these are where false triggers come from. Returns the
    seconds added. Only the given part grows: validation and test audio stay as recorded."""
    added = 0
    for x, kind in list(zip(bank.backgrounds[split], bank.background_kinds[split])):
        if kind not in kinds:
            continue
        for f in factors:
            y = aug.speed(x, f)
            bank.backgrounds[split].append(y)
            bank.background_kinds[split].append(kind)
            added += len(y)
    return round(added / bank.sample_rate)


def add_synthetic_drums(bank: ClipBank, seconds: float, seed: int = 0, split: str = "train") -> int:
    """Add `seconds` of synthetic drum-kit songs (`trainer.percussion`) to a part's backgrounds, as
    music: the recorded training music has no drums, and drum hits are snap-like. Returns the
    seconds added. Seeded: the same seed gives the same songs."""
    from trainer.percussion import synth_tracks

    if seconds <= 0:
        return 0
    return _add_backgrounds(bank, [t.audio for t in synth_tracks(bank.sample_rate, seconds, seed)], "music", split)


def add_lookalike_kits(bank: ClipBank, seconds: float, kits: Path, seed: int = 0, split: str = "train") -> int:
    """Add `seconds` of recorded claps, clicks, knocks, clinks and snares from the training drum kits
    (`trainer.drumkits`; the evaluation kits are never used) to a part's backgrounds. Returns the
    seconds added."""
    from trainer.drumkits import training_tracks

    if seconds <= 0:
        return 0
    tracks = training_tracks(bank.sample_rate, seconds, list(bank.backgrounds[split]), kits, seed)
    return _add_backgrounds(bank, tracks, "lookalikes", split)


def add_music_packages(bank: ClipBank, seconds: float, root: Path = Path("/"), seed: int = 0,
                       split: str = "train") -> int:
    """Add `seconds` of real music from the training music packages (`trainer.music`; the
    evaluation packages are never used), played in simulated rooms, to a part's backgrounds as
    music. Returns the seconds added."""
    from trainer.music import training_tracks

    if seconds <= 0:
        return 0
    return _add_backgrounds(bank, training_tracks(bank.sample_rate, seconds, root, seed), "music", split)


def add_typing(bank: ClipBank, seconds: float, root: Path | None = None, seed: int = 0, split: str = "train") -> int:
    """Add `seconds` of typing on the train half of the buckling-spring keyboard's keys
    (`trainer.keyboard`; the eval half is never used) to a part's backgrounds as keyboard sound.
    Returns the seconds added."""
    from trainer import keyboard as kb

    if seconds <= 0:
        return 0
    tracks = kb.training_tracks(bank.sample_rate, seconds, list(bank.backgrounds[split]),
                                kb.DEFAULT_ROOT if root is None else root, seed)
    return _add_backgrounds(bank, tracks, "typing", split)


def _add_backgrounds(bank: ClipBank, tracks: list[np.ndarray], kind: str, split: str) -> int:
    """Append `tracks` to a part's backgrounds as `kind`; returns the seconds added."""
    for x in tracks:
        bank.backgrounds[split].append(x)
        bank.background_kinds[split].append(kind)
    return round(sum(len(x) for x in tracks) / bank.sample_rate)


# ---------------------------------------------------------------- window synthesis


@dataclass(frozen=True)
class WindowSpec:
    sample_rate: int = 16000
    window_samples: int = 4000
    onset_min: int = 1440
    onset_max: int = 3360
    # onsets this close outside [onset_min, onset_max] are never used as negatives: the detector
    # localises the onset itself, so firing a little early or late is harmless, and training on
    # such near-misses only blurs the line that matters (snap or no snap)
    margin_early: int = 480
    margin_late: int = 640


@dataclass(frozen=True)
class MixConfig:
    """How windows are made. Probabilities of each kind of window; SNR and gain ranges."""

    p_positive: float = 0.4
    # shares of the negatives
    neg_no_snap: float = 0.25
    neg_background: float = 0.45  # speech, music, keyboards...: where false triggers come from
    neg_early: float = 0.15  # snap just starting (too little heard yet)
    neg_late: float = 0.15  # snap older than the positive region (tail, or whole snap early on)
    neg_hard: float = 0.3  # mined windows the model got wrong (only once a pool has been mined)
    p_background_mix: float = 0.6  # add a training background at random SNR
    snr_db: tuple[float, float] = (0.0, 30.0)
    gain_db: tuple[float, float] = (-18.0, 6.0)
    p_band_limit: float = 0.5
    p_second_snap: float = 0.2  # an earlier snap of a double snap in the window too
    pre_onset: int = 320  # samples kept before a snap's onset when cutting it
    min_snap_onset: int = 48  # clips whose onset is closer to their start are cut-off tails
    augment: bool = True


class WindowSampler:
    """Draws labelled windows from a ClipBank split. `draw(rng)` -> (window float32 [N], label, kind)."""

    def __init__(self, bank: ClipBank, split: str, spec: WindowSpec, mix: MixConfig = MixConfig(),
                 background_split: str | None = None):
        self.bank, self.spec, self.mix = bank, spec, mix
        self.snaps_all = bank.snaps[split]
        self.snaps = [s for s in self.snaps_all if s.onset >= mix.min_snap_onset] or self.snaps_all
        self.no_snaps = bank.no_snaps[split] or [c for s in SPLITS for c in bank.no_snaps[s]]
        bsplit = background_split or split
        self.backgrounds = [b for b in bank.backgrounds[bsplit] if len(b) >= spec.window_samples // 4]
        if not self.snaps or not self.no_snaps:
            raise _usage_error(f"the '{split}' part has no usable snap or no_snap clips "
                               f"({len(self.snaps)} snap, {len(bank.no_snaps[split])} no_snap): add more clips")
        self.hard: list[np.ndarray] = []  # hard negative windows (mine_hard_negatives), drawn as they are
        self._weigh()

    def _weigh(self) -> None:
        mix = self.mix
        bg = mix.neg_background if self.backgrounds else 0.0
        hard = mix.neg_hard if self.hard else 0.0
        w = np.array([mix.neg_no_snap + (mix.neg_background - bg), bg, mix.neg_early, mix.neg_late, hard])
        self.neg_weights = w / w.sum()

    def set_hard_negatives(self, windows: list[np.ndarray]) -> None:
        """Windows the model wrongly scores high (no snap in them): drawn as negatives from now on."""
        self.hard = [np.asarray(w, dtype=np.float32) for w in windows if len(w) == self.spec.window_samples]
        self._weigh()

    # -- pieces
    def _bed(self, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
        """Room sound under a window (or n samples): a no_snap clip (same room as the snaps)."""
        return aug.crop(self.no_snaps[int(rng.integers(len(self.no_snaps)))], n or self.spec.window_samples, rng)

    def _background(self, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
        return aug.crop(self.backgrounds[int(rng.integers(len(self.backgrounds)))], n or self.spec.window_samples, rng)

    def _snap(self, rng: np.random.Generator, pool: list[SnapClip] | None = None) -> tuple[np.ndarray, int]:
        pool = pool or self.snaps
        c = pool[int(rng.integers(len(pool)))]
        return aug.snap_segment(c.samples, c.onset, self.mix.pre_onset, self.spec.window_samples)

    def _with_snaps(self, rng: np.random.Generator, positions: list[int], tails_ok: bool = False,
                    length: int | None = None) -> np.ndarray:
        bed = self._bed(rng, length)
        level = 0.0
        for p in positions:
            seg, lead = self._snap(rng, self.snaps_all if tails_ok else None)
            bed = aug.overlay(bed, seg, p - lead)
            level = max(level, aug.snap_level(seg, lead, self.spec.sample_rate))
        if self.backgrounds and rng.random() < self.mix.p_background_mix:
            snr = rng.uniform(*self.mix.snr_db)
            bed = bed + aug.scale_to_snr(level, self._background(rng, length), snr)
        return bed

    def _finish(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not self.mix.augment:
            return np.clip(x, -1, 1).astype(np.float32)
        if rng.random() < self.mix.p_band_limit:
            x = aug.random_band_limit(x, self.spec.sample_rate, rng)
        return aug.random_gain(x, rng, *self.mix.gain_db)

    # -- windows
    def _snap_positions(self, p: int, rng: np.random.Generator) -> list[int]:
        """A snap at `p`, sometimes with the earlier snap of a double 0.2-0.6 s before it."""
        if rng.random() < self.mix.p_second_snap:
            return [p, p - int(rng.integers(int(0.2 * self.spec.sample_rate), int(0.6 * self.spec.sample_rate)))]
        return [p]

    def positive(self, rng: np.random.Generator) -> np.ndarray:
        s = self.spec
        pos = self._snap_positions(int(rng.integers(s.onset_min, s.onset_max + 1)), rng)
        return self._finish(self._with_snaps(rng, pos), rng)

    def positive_strip(self, rng: np.random.Generator, hop: int) -> tuple[np.ndarray, int]:
        """One snap as the detector meets it: audio on which windows one `hop` apart walk the
        snap's onset through the positive region, from its late end (the earliest window that may
        fire) to its early end. Returns (strip, number of windows); window j starts at j * hop."""
        s = self.spec
        k = (s.onset_max - s.onset_min) // hop + 1
        pos = self._snap_positions(s.onset_max, rng)
        return self._finish(self._with_snaps(rng, pos, length=s.window_samples + (k - 1) * hop), rng), k

    def negative(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        s = self.spec
        kind = ("no_snap", "background", "early", "late", "hard")[int(rng.choice(5, p=self.neg_weights))]
        if kind == "hard":
            x = self.hard[int(rng.integers(len(self.hard)))]
            # mined at their own level: only a little gain change, no band-limit (keep them hard)
            return aug.random_gain(x, rng, -6.0, 3.0), kind
        if kind == "no_snap":
            x = self._bed(rng)
            if self.backgrounds and rng.random() < 0.3:
                x = x + aug.scale_to_snr(aug.rms(x), self._background(rng), rng.uniform(-10, 20))
        elif kind == "background":
            x = self._background(rng)
            if rng.random() < 0.3:
                x = x + self._bed(rng)
        elif kind == "early":
            p = int(rng.integers(s.onset_max + s.margin_early, s.window_samples + s.sample_rate // 20))
            pos = [p]
            if rng.random() < self.mix.p_second_snap:
                pos.append(int(rng.integers(-s.window_samples // 2, s.onset_min - s.margin_late)))
            x = self._with_snaps(rng, pos, tails_ok=True)
        else:  # late
            p = int(rng.integers(-s.window_samples // 2, s.onset_min - s.margin_late))
            x = self._with_snaps(rng, [p], tails_ok=True)
        return self._finish(x, rng), kind

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, int, str]:
        if rng.random() < self.mix.p_positive:
            return self.positive(rng), 1, "positive"
        x, kind = self.negative(rng)
        return x, 0, kind


def fixed_windows(sampler: WindowSampler, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A fixed, seeded set of n windows (validation / test): [n, window], labels [n], kinds."""
    rng = np.random.default_rng(seed)
    xs, ys, kinds = [], [], []
    for _ in range(n):
        x, y, k = sampler.draw(rng)
        xs.append(x)
        ys.append(y)
        kinds.append(k)
    return np.stack(xs).astype(np.float32), np.array(ys, dtype=np.int64), kinds


def window_dataset(sampler: WindowSampler, epoch_size: int, seed: int):
    """A torch Dataset of `epoch_size` freshly drawn windows per epoch. Item i of the epoch is drawn
    from a generator seeded by (seed, epoch, i), so a run is reproducible whatever the order."""
    import torch
    from torch.utils.data import Dataset

    class _Windows(Dataset):
        def __init__(self):
            self.epoch = 0

        def __len__(self) -> int:
            return epoch_size

        def __getitem__(self, i: int):
            rng = np.random.default_rng([seed, self.epoch, i])
            x, y, _ = sampler.draw(rng)
            return torch.from_numpy(x), torch.tensor(float(y))

    return _Windows()


def stream_windows(x: np.ndarray, window: int, hop: int) -> np.ndarray:
    """All windows of a recording at multiples of hop, as the listener sees it: [N, window] (a view)."""
    if len(x) < window:
        return np.zeros((0, window), dtype=np.float32)
    n = 1 + (len(x) - window) // hop
    return np.lib.stride_tricks.as_strided(x, shape=(n, window), strides=(x.strides[0] * hop, x.strides[0]))


def mine_hard_negatives(score: Callable[[np.ndarray], np.ndarray], recordings: list[np.ndarray], window: int,
                        hop: int, min_score: float = 0.2, limit: int = 4000, rng_seed: int = 0,
                        batch: int = 1024) -> tuple[list[np.ndarray], dict]:
    """Run `score` ([B, window] -> [B] probabilities) over every window of recordings that hold no
    snap (backgrounds, no_snap clips) and keep the windows scoring >= min_score, the highest first
    (at most `limit`). Returns the windows and a summary (windows scored, share above min_score)."""
    found: list[tuple[float, np.ndarray]] = []
    scored = 0
    for x in recordings:
        x = np.ascontiguousarray(x, dtype=np.float32)
        w = stream_windows(x, window, hop)
        for i in range(0, len(w), batch):
            b = np.ascontiguousarray(w[i:i + batch])
            p = np.asarray(score(b))
            scored += len(p)
            for k in np.nonzero(p >= min_score)[0]:
                found.append((float(p[k]), b[k].copy()))
    found.sort(key=lambda t: -t[0])
    kept = [w for _, w in found[:limit]]
    return kept, {"windows_scored": scored, "above": len(found), "kept": len(kept), "min_score": min_score}
