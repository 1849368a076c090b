"""`snap-train enroll DIR --out FILE`: fine-tune a model on your own snaps and your own room.

DIR holds `snap/` (clips with one snap each: any rate, any length) and `no_snap/` (your room's
ordinary sound and its look-alikes: claps, knocks, typing; long recordings are cut into windows),
as written by `snap-train record --guided DIR` or sorted by `snap-train label` (clips the
listener saved with `capture_dir` feed straight in). `DIR/review/` is ignored.

Steps:
1. hold back about a fifth of the clips (every fifth snap clip in a hash order, the last fifth of
   every room recording) for the before/after table and the threshold: never trained on;
2. mine hard negatives: run the listener's own SnapPipeline with the base model over your room
   audio; every detection there is a false trigger (and near misses, at half the threshold, too);
3. fine-tune the base model (`trainer.export.load_trainable`) on windows of your clips (the
   trainer's own window sampler: your snaps placed in your room's sound, early/late snaps as
   negatives), the mined false triggers, and a sample of the shipped training data so it forgets
   nothing; an L2 pull towards the base weights keeps it close; BatchNorm statistics stay frozen;
   after each third of the steps, mine again with the model being trained;
4. calibrate the threshold: the value that keeps false triggers on the room audio (held-back and
   trained-on) within the target rate and finds the most held-back snaps, in the middle of that
   range;
   with `--candidates K` steps 3 and 4 run K times from different seeds; the fine-tuning kept is
   the one with the fewest false triggers on audio none of them trained on (your held-back room,
   the shipped data's validation negatives) among those that find about as many held-back snaps;
5. choose the follow threshold (the bar for a gesture's 2nd and 3rd snap) on gesture scenes of
   the held-back snaps over the room audio (`trainer.gesture_scenes`, `snap-train tune`'s rule),
   among the bars that cost scenes of the shipped data's validation snaps no more than a point of
   F1 against the base's; the base's value when too few snaps are held back or none does better;
6. write the model file (`trainer.export.export_model`) with the enrollment in its metadata and
   that follow threshold (dropped if not below the new threshold), and print a before/after table
   measured with the SnapPipeline on the held-back clips and on the shipped data's validation
   negatives (does it fire more on other sounds now?).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"
MATCH_S = 0.15  # a held-back snap is found when an event's onset lies this close to the true onset


# ---------------------------------------------------------------------------------------------
# the user's clips


@dataclass
class UserClips:
    """The user's folder at the model's rate, split into training and held-back parts."""

    snaps_train: list  # trainer.data.SnapClip
    snaps_held: list
    room_train: list[np.ndarray]
    room_held: list[np.ndarray]
    room_names: list[str]  # per room_train entry (for the report)
    skipped: list[str] = field(default_factory=list)
    n_snap_files: int = 0
    n_no_snap_files: int = 0

    def room_seconds(self, rate: int, held: bool = False) -> float:
        return sum(len(x) for x in (self.room_held if held else self.room_train)) / rate

    def summary(self, rate: int) -> dict:
        return {"snap_clips": self.n_snap_files, "snap_train": len(self.snaps_train),
                "snap_held_back": len(self.snaps_held), "no_snap_files": self.n_no_snap_files,
                "room_seconds_train": round(self.room_seconds(rate), 1),
                "room_seconds_held_back": round(self.room_seconds(rate, True), 1),
                "skipped": len(self.skipped)}


def _hash_order(name: str) -> str:
    return hashlib.sha1(f"enroll:{name}".encode()).hexdigest()


def held_back_names(names: list[str], fraction: float) -> set[str]:
    """Every k-th name (k = 1/fraction) in an order given by a hash of the name: deterministic,
    independent of file order, and about `fraction` of them. Nothing is held back from fewer
    than 5 clips (too few to both train and judge)."""
    if fraction <= 0 or len(names) < 5:
        return set()
    k = max(2, round(1 / fraction))
    order = sorted(names, key=_hash_order)
    return {n for i, n in enumerate(order) if i % k == k - 1}


def split_recording(x: np.ndarray, fraction: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(train part, held-back part): the last `fraction` of a recording of at least 2 s is held
    back; shorter ones are all training."""
    if fraction <= 0 or len(x) < 2 * rate:
        return x, x[:0]
    cut = int(len(x) * (1 - fraction))
    return x[:cut], x[cut:]


def load_user_dir(folder: Path, rate: int, holdout: float = 0.2) -> UserClips:
    from snap_mqtt.audio_io import AudioFileError, audio_files, is_silent, read_audio
    from snap_mqtt.onset import snap_onset
    from trainer.cli import UsageError
    from trainer.data import SnapClip

    for sub in ("snap", "no_snap"):
        if not (folder / sub).is_dir():
            raise UsageError(f"{folder / sub}: no such folder (enroll needs DIR/snap and DIR/no_snap, "
                             "as written by `snap-train record --guided DIR`)")
    skipped: list[str] = []

    def read_all(sub: str) -> list[tuple[Path, np.ndarray]]:
        out = []
        for p in audio_files([folder / sub]):
            if p.name.startswith("."):
                continue
            try:
                x = read_audio(p, rate).samples
            except AudioFileError as exc:
                log.warning("skipped: %s", exc)
                skipped.append(str(exc))
                continue
            if is_silent(x):
                log.warning("skipped: %s: silent (digital silence)", p)
                skipped.append(f"{p}: silent")
                continue
            out.append((p, x))
        return out

    snap_files = read_all("snap")
    snaps = []
    for p, x in snap_files:
        o = snap_onset(x, rate)
        if o is None:
            msg = f"{p}: no clear snap in a snap clip (check its label; not trained on)"
            log.warning("skipped: %s", msg)
            skipped.append(msg)
            continue
        snaps.append(SnapClip(p.name, x, int(o)))
    room_files = read_all("no_snap")
    if not snaps:
        raise UsageError(f"{folder / 'snap'}: no usable snap clips (need WAV, FLAC or OGG clips with a snap each)")
    if not room_files:
        raise UsageError(f"{folder / 'no_snap'}: no usable recordings of the room (need at least a minute "
                         "of its ordinary sound, WAV, FLAC or OGG)")
    held = held_back_names([s.name for s in snaps], holdout)
    room_train, room_held, names = [], [], []
    for p, x in room_files:
        a, b = split_recording(x, holdout, rate)
        if len(a) >= rate // 4:
            room_train.append(a)
            names.append(p.name)
        if len(b):
            room_held.append(b)
    if not room_train:
        raise UsageError(f"{folder / 'no_snap'}: recordings too short (need at least 0.25 s each)")
    return UserClips(snaps_train=[s for s in snaps if s.name not in held],
                     snaps_held=[s for s in snaps if s.name in held],
                     room_train=room_train, room_held=room_held, room_names=names, skipped=skipped,
                     n_snap_files=len(snap_files), n_no_snap_files=len(room_files))


# ---------------------------------------------------------------------------------------------
# window scores and threshold calibration (pure)


def window_starts(n_samples: int, window: int, hop: int) -> np.ndarray:
    """Starts of the windows a stream of n samples completes (aligned to multiples of hop, as the
    detector's)."""
    if n_samples < window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_samples - window + 1, hop, dtype=np.int64)


def positive_peak(scores: np.ndarray, onset: int, window: int, hop: int, lo: int, hi: int) -> float:
    """Highest score among the windows that place `onset` inside their positive region [lo, hi]:
    what the detector needs to reach its threshold for that snap."""
    pos = onset - np.arange(len(scores)) * hop
    sel = (pos >= lo) & (pos <= hi)
    return float(scores[sel].max()) if sel.any() else 0.0


def count_runs(scores: np.ndarray, threshold: float, merge_windows: int = 1) -> int:
    """Runs of windows at or above `threshold` (runs fewer than `merge_windows` apart count as
    one): about the number of events the detector would report."""
    idx = np.flatnonzero(np.asarray(scores) >= threshold)
    if len(idx) == 0:
        return 0
    return int(1 + np.sum(np.diff(idx) > merge_windows))


@dataclass(frozen=True)
class Calibration:
    threshold: float
    recall: float  # held-back snaps reaching it
    false_triggers: int  # on held-back room audio
    allowed: int  # false triggers the target allows on that much audio
    hours: float
    note: str = ""


def calibrate_threshold(pos_peaks: list[float], neg_scores: list[np.ndarray], hours: float,
                        target_per_hour: float, merge_windows: int = 1,
                        grid: np.ndarray | None = None, fallback: float = 0.5,
                        min_recall: float = 0.9, floor: float | None = None,
                        min_gain: int = 2) -> Calibration:
    """The threshold that keeps false triggers on the held-back room audio within
    `target_per_hour` and, among those, finds the most held-back snaps; of the thresholds that
    tie, the one in the middle (in log-odds), so that neither side sits on the edge.
    When no threshold meets the target, the one with the fewest false triggers among those that
    still find `min_recall` of the held-back snaps: a threshold that finds no snaps helps nobody.
    `floor` (the base model's threshold): never go below it when it finds as many held-back snaps
    (a lower threshold that the held-back clips cannot justify only buys false triggers), nor when
    going below finds fewer than `min_gain` more of them (one snap of ten is no evidence: it took
    one simulated person from 0.937 to 0.87 and the shipped test scenes from 96 to 164 false
    gestures per hour); otherwise go only as far below it as those snaps need."""
    grid = np.round(np.arange(0.02, 0.991, 0.005), 4) if grid is None else grid
    allowed = int(math.floor(target_per_hour * hours))
    peaks = np.asarray(pos_peaks, dtype=float)
    if not len(peaks) and not any(len(s) for s in neg_scores):
        return Calibration(fallback, 1.0, 0, allowed, hours, "nothing held back: kept the base threshold")
    fts = np.array([sum(count_runs(s, t, merge_windows) for s in neg_scores) for t in grid])
    rec = np.array([(peaks >= t).mean() if len(peaks) else 1.0 for t in grid])
    note = ""
    ok = fts <= allowed
    if ok.any():
        cand = grid[ok & (rec >= rec[ok].max() - 1e-12)]
    else:
        note = "no threshold meets the false-trigger target on the held-back audio"
        keep = rec >= min(min_recall, rec.max()) - 1e-12
        cand = grid[keep & (fts <= fts[keep].min())]
    logit = np.log(cand / (1 - cand))
    t = float(1 / (1 + np.exp(-(logit.min() + logit.max()) / 2)))
    t = float(np.clip(round(t, 4), 0.02, 0.98))
    if floor is not None and t < floor:
        rec_t = (peaks >= t).mean() if len(peaks) else 1.0
        gained = int(np.sum(peaks >= t) - np.sum(peaks >= floor))  # held-back snaps only t finds
        if gained < min_gain:
            t = float(floor)
            why = ("it finds as many held-back snaps" if gained <= 0 else
                   f"going below it finds {gained} more held-back snap{'s' if gained != 1 else ''}, fewer than {min_gain}")
            note = (note + "; " if note else "") + f"kept the base threshold ({why})"
        else:
            # below the base threshold only as far as the held-back snaps need: a middle of a wide
            # range (0.36 for one simulated person, whose room audio, trained on, never fired)
            # buys false triggers that the held-back room audio is too short to show
            need = grid[(grid <= floor) & (rec >= rec_t - 1e-12)]
            if len(need):
                t = float(need.max())
                note = (note + "; " if note else "") + "below the base threshold only as far as the held-back snaps need"
    return Calibration(t, float((peaks >= t).mean()) if len(peaks) else 1.0,
                       int(sum(count_runs(s, t, merge_windows) for s in neg_scores)), allowed, hours, note)


# ---------------------------------------------------------------------------------------------
# scoring with a trainable net


def make_scorer(net) -> Callable[[np.ndarray], np.ndarray]:
    """numpy windows [B, W] -> probabilities [B], no gradients. Puts the net in eval mode: in train
    mode BatchNorm would score each batch with its own statistics and fold the mined audio into the
    running ones, which the exported model keeps (a net fresh from `load_trainable` is in train mode)."""
    import torch

    net.eval()

    def score(wins: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = []
            for i in range(0, len(wins), 512):
                out.append(torch.sigmoid(net(torch.from_numpy(np.ascontiguousarray(wins[i:i + 512])))).numpy())
            return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    return score


def scores_of(score: Callable, x: np.ndarray, window: int, hop: int) -> np.ndarray:
    starts = window_starts(len(x), window, hop)
    if not len(starts):
        return np.zeros(0, dtype=np.float32)
    wins = np.lib.stride_tricks.sliding_window_view(x, window)[::hop][: len(starts)]
    return np.asarray(score(wins), dtype=np.float32)


def detect(score: Callable, det_spec, threshold: float, x: np.ndarray, busy_seconds: float = 0.0) -> list:
    """SnapEvents of the listener's SnapPipeline over model-rate audio (gesture events dropped).
    The busy guard is off by default: mining wants every place the model fires, also those the
    guard would hide (`busy_seconds=None`: the listener's own setting)."""
    from snap_mqtt.events import SnapEvent
    from snap_mqtt.pipeline import DetectionParams, SnapPipeline

    params = DetectionParams(threshold=threshold)
    if busy_seconds is not None:
        params = replace(params, busy_seconds=busy_seconds)
    pipe = SnapPipeline(score, params, input_rate=det_spec.sample_rate, spec=det_spec)
    events = pipe.process(x) + pipe.flush()
    return [e for e in events if isinstance(e, SnapEvent)]


def mine_hard_negatives(score: Callable, det_spec, threshold: float, room: list[np.ndarray],
                        near_miss: float = 0.5, offset: int = 0) -> tuple[list[tuple[int, int]], int]:
    """Windows (recording index + `offset`, start sample) where the pipeline fires on room audio
    at `threshold * near_miss`, and how many of those events reach `threshold` itself (the real
    false triggers)."""
    w = det_spec.window_samples
    found: list[tuple[int, int]] = []
    real = 0
    for i, x in enumerate(room):
        for e in detect(score, det_spec, max(0.01, threshold * near_miss), x):
            end = int(round(e.detected_at * det_spec.sample_rate))
            found.append((offset + i, max(0, end - w)))
            real += e.confidence >= threshold
    return found, int(real)


# ---------------------------------------------------------------------------------------------
# before / after on held-back clips


def heldout_figures(score: Callable, det_spec, threshold: float, user: UserClips) -> dict:
    """What the listener would do on the held-back clips with this model and threshold."""
    rate = det_spec.sample_rate
    found = 0
    peaks = []
    for s in user.snaps_held:
        ev = detect(score, det_spec, threshold, s.samples, busy_seconds=None)
        found += any(abs(e.time - s.onset / rate) <= MATCH_S for e in ev)
        peaks.append(positive_peak(scores_of(score, s.samples, det_spec.window_samples, det_spec.hop_samples),
                                   s.onset, det_spec.window_samples, det_spec.hop_samples,
                                   det_spec.onset_min_samples, det_spec.onset_max_samples))
    ft = sum(len(detect(score, det_spec, threshold, x, busy_seconds=None)) for x in user.room_held)
    hours = user.room_seconds(rate, held=True) / 3600
    return {"threshold": round(threshold, 4), "snaps_found": int(found), "snaps": len(user.snaps_held),
            "snap_recall": round(found / len(user.snaps_held), 4) if user.snaps_held else None,
            "mean_snap_score": round(float(np.mean(peaks)), 4) if peaks else None,
            "false_triggers": int(ft), "room_seconds": round(hours * 3600, 1),
            "false_triggers_per_hour": round(ft / hours, 1) if hours else None}


def window_metrics(score: Callable, wins: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Precision, recall, F1 of windows at a threshold (the shipped data's test windows)."""
    p = np.asarray(score(wins)) >= threshold
    y = labels.astype(bool)
    tp, fp, fn = int((p & y).sum()), int((p & ~y).sum()), int((~p & y).sum())
    prec = tp / (tp + fp) if tp + fp else 1.0
    rec = tp / (tp + fn) if tp + fn else 1.0
    return {"precision": round(prec, 4), "recall": round(rec, 4),
            "f1": round(2 * prec * rec / (prec + rec), 4) if prec + rec else 0.0, "windows": int(len(y))}


# ---------------------------------------------------------------------------------------------
# the shipped data (a sample of it)


def shipped_negative_audio(bank, rate: int, splits: tuple[str, ...] = ("train",)) -> list[np.ndarray]:
    """A ClipBank's negatives as recordings to mine, per split: each background, and the no_snap
    clips joined end to end with 10 ms crossfades (a hard cut would be a click)."""
    from trainer.scenes import join

    out: list[np.ndarray] = []
    for split in splits:
        out += [np.asarray(b, dtype=np.float32) for b in bank.backgrounds[split] if len(b)]
        clips = [c for c in bank.no_snaps[split] if len(c)]
        if clips:
            out.append(join(clips, rate, xfade_s=0.010))
    return out


def validation_negatives(data: Path, bank, rate: int) -> list[np.ndarray]:
    """Shipped audio without a snap that no model trained on, to choose among fine-tunings by:
    the validation no_snap clips in `bank`, joined, and the validation part of every training
    background (70-85 % of a long file, short files whose name hashes to val: as `snap-train train`
    splits them and `snap-train scenes --background-split val` finds them)."""
    from snap_mqtt.audio_io import read_audio
    from trainer.data import scan_data
    from trainer.scenes import join, validation_part

    out: list[np.ndarray] = []
    clips = [c for c in bank.no_snaps["val"] if len(c)]
    if clips:
        out.append(join(clips, rate, xfade_s=0.010))
    df = scan_data(data)
    for rel in df[(df["label"] == "background") & (df["split"] == "train")]["path"]:
        part = validation_part(data / rel)
        if part is None:
            continue
        x = read_audio(data / rel, rate).samples
        x = x[int(part[0] * len(x)): int(part[1] * len(x))]
        if len(x) >= rate // 4:
            out.append(np.asarray(x, dtype=np.float32))
    return out


def load_shipped(data: Path, rate: int, n_clips: int, seed: int):
    """A ClipBank with a sample of the shipped data's training clips and backgrounds (for replay),
    its validation clips (no_snap: to choose among fine-tunings; snap: to check the follow
    threshold's choice) and a sample of its test clips (for the before/after check), or None when
    `data` is missing."""
    from trainer.data import load_clip_bank, scan_data

    if not data.is_dir():
        log.warning("%s: shipped training data not found; fine-tuning on your clips alone "
                    "(the model may forget some of what it knew): pass --data", data)
        return None
    df = scan_data(data)
    rng = np.random.default_rng(seed)
    parts = []
    for label, split, n in (("snap", "train", n_clips), ("no_snap", "train", n_clips),
                            ("snap", "test", n_clips // 2), ("no_snap", "test", n_clips // 2),
                            ("snap", "val", n_clips // 2), ("no_snap", "val", n_clips // 2),
                            ("background", "train", max(8, n_clips // 12))):
        sub = df[(df["label"] == label) & (df["split"] == split)]
        if len(sub) > n:
            sub = sub.iloc[np.sort(rng.choice(len(sub), n, replace=False))]
        parts.append(sub)
    import pandas as pd

    manifest = pd.concat(parts, ignore_index=True)
    return load_clip_bank(manifest, data, rate)


def add_shipped_lookalikes(bank, cfg: "TuneConfig") -> int:
    """The training kits' look-alikes into the replayed shipped data (`cfg.lookalike_seconds`);
    without the kits installed, a warning and none (enrollment still works, less wary of claps)."""
    from trainer.data import add_lookalike_kits
    from trainer.drumkits import DEFAULT_ROOT

    return _replay_recorded(bank, cfg.lookalike_seconds, add_lookalike_kits, Path(cfg.kits) if cfg.kits else DEFAULT_ROOT,
                            cfg.seed, "recorded look-alikes (the enrolled model may accept claps)")


def add_shipped_typing(bank, cfg: "TuneConfig") -> int:
    """Typing on the train half of the recorded keyboard's keys into the replayed shipped data
    (`cfg.typing_seconds`); without the keyboard installed, a warning and none."""
    from trainer.data import add_typing

    return _replay_recorded(bank, cfg.typing_seconds, add_typing, Path(cfg.keyboard) if cfg.keyboard else None,
                            cfg.seed, "typing (the enrolled model may fire on a clicky keyboard)")


def _replay_recorded(bank, seconds: float, add: Callable[..., int], root: Path | None, seed: int, missing: str) -> int:
    """`add(bank, seconds, root, seed=)` (a `trainer.data` adder of recordings installed outside the
    data folder) for the replay; when they are not installed, a warning naming what is `missing`."""
    if seconds <= 0:
        return 0
    try:
        return add(bank, seconds, root, seed=seed)
    except FileNotFoundError as exc:
        log.warning("%s; enrolling without %s", exc, missing)
        return 0


# ---------------------------------------------------------------------------------------------
# fine-tuning


EARLY_WINDOWS = 2  # a snap first heard later than its third window (40 ms past the earliest) is late


def mine_hard_positives(score: Any, sampler: Any, n: int, threshold: float, hop: int,
                        rng: np.random.Generator, early: int = EARLY_WINDOWS) -> tuple[list[np.ndarray], dict]:
    """Snaps the detector would miss or decide late, as positive windows to train on. Each of `n`
    fresh training snaps is scored as the detector meets it (`WindowSampler.positive_strip`):
    a missed one gives its best-scored window and its neighbours; one first reaching `threshold`
    later than its first `early` + 1 windows gives those windows (each hop later is 20 ms more
    latency). Returns the windows and how many snaps were missed and late."""
    if n <= 0:
        return [], {"snaps": 0, "missed": 0, "late": 0}
    strips = [sampler.positive_strip(rng, hop) for _ in range(n)]
    k, w = strips[0][1], sampler.spec.window_samples
    wins = np.stack([x[j * hop: j * hop + w] for x, _ in strips for j in range(k)]).astype(np.float32)
    p = np.asarray(score(wins)).reshape(n, k)
    out, missed, late = [], 0, 0
    for i in range(n):
        fired = np.flatnonzero(p[i] >= threshold)
        if len(fired) == 0:
            missed += 1
            best = int(np.argmax(p[i]))
            take = range(max(0, best - 1), min(k, best + 2))
        elif fired[0] > early:
            late += 1
            take = range(early + 1)
        else:
            continue
        out.extend(wins[i * k + j] for j in take)
    return out, {"snaps": n, "missed": missed, "late": late}


@dataclass
class TuneConfig:
    steps: int = 500
    batch: int = 64
    lr: float = 5e-4
    l2sp: float = 1e-3  # pull towards the base weights (forget nothing)
    p_user: float = 0.4
    p_hard: float = 0.25  # the rest (0.35): shipped data, whose snaps keep its own recall up
    user_positive: float = 0.45  # share of positives among the user's windows
    shipped_positive: float = 0.5  # share of positives among the shipped data's windows
    near_miss: float = 0.3  # also mine where the pipeline fires at this fraction of the threshold
    # mine the replayed shipped negatives (no_snap clips, backgrounds) too: the user's snaps teach
    # the model new kinds of transient, and without this the false triggers it learns to accept
    # are everywhere but in the user's room (shipped test scenes: F1 0.921 -> 0.861)
    mine_shipped: bool = True
    # share of hard-negative draws from the user's room when both it and the shipped data have some:
    # the shipped pool is several times larger and would otherwise push the model off the
    # shipped data's own snaps (recall on its test scenes 0.92 -> 0.87)
    p_hard_user: float = 0.5
    # share of each batch from mined hard positives (`mine_hard_positives`; `snap-train polish
    # --hard-positives`). Not used by enrollment: on the simulated persons it gave no gain
    # (F1 0.954 / 0.918 without, 0.946 / 0.918 with) and more false gestures (model card)
    p_hard_pos: float = 0.0
    hard_positive_draws: int = 1500  # snaps scored per mining round for hard positives
    mining_rounds: int = 3  # mining passes: with the base model, then again after each 1/3 of the steps
    # recorded claps, clicks and knocks from the training drum kits (trainer.drumkits) added to the
    # replayed shipped negatives: a user's snaps teach the model to accept snaps from a new room and
    # mic, and without these it learns to accept claps with them (model card)
    lookalike_seconds: float = 300.0
    kits: str | None = None  # Hydrogen drum kits folder (None: trainer.drumkits.DEFAULT_ROOT)
    # typing on the train half of a recorded buckling-spring keyboard (trainer.keyboard), replayed
    # the same way: the shipped model learned it (model card row 46) and enrolling without it
    # forgot it (four simulated persons: 4 -> 16-29 false gestures in 10 min of typing; with it 2-3,
    # claps and the users' rooms about as before; docs/enrollment.md)
    typing_seconds: float = 300.0
    keyboard: str | None = None  # the keyboard's recordings (None: trainer.keyboard.DEFAULT_ROOT)
    # share of the shipped data's windows (drawn and mined) played through the user's channel as
    # estimated from their snaps (trainer.channel): negatives with the user's colouring, so that
    # colouring alone does not make a snap. Simulated persons 2-4: false gestures in their rooms
    # 62 / 39 / 84 -> 39 / 39 / 19 per hour at 0.3; at 0.5 about as many, the shipped scenes' F1
    # lower; at 1.0 (the shipped data only ever heard through the user's channel, persons 1 and 2)
    # 64 and 68 false gestures per hour on the shipped test scenes against 24 and 12 at 0.5
    # (docs/enrollment.md)
    channel_match: float = 0.3
    # the shipped snaps too: with only the negatives through the channel (0.5, persons 2-4) the
    # rooms gave 29 / 49 / 26 false gestures per hour (32 / 39 / 36 with the snaps too) and the
    # shipped test scenes 36 / 72 / 80 (12 / 40 / 36)
    channel_positives: bool = True
    # fine-tunings from different seeds, the one with the fewest false triggers on held-out
    # negatives kept (`pick_candidate`). How much an enrollment costs the shipped data varies with
    # the seed (simulated person 3: 32 or 96 false gestures per hour on the shipped test scenes) and
    # the validation negatives see it, but at matched recall two candidates gave more false
    # gestures in the user's own room than one (eight enrollments; docs/enrollment.md): not default
    candidates: int = 1
    # the follow threshold chosen on gesture scenes of the held-back snaps (trainer.gesture_scenes) with
    # `snap-train tune`'s rule, instead of the base's: the bar tuned for the shipped hand was too high
    # for a hand the model has just learned (four simulated persons: exact gestures in their rooms
    # higher at 0.3-0.5 than at 0.7 for every one; docs/enrollment.md)
    tune_follow: bool = True
    follow_scenes: int = 12  # 30 s scenes: about 80 gestures
    seed: int = 0


class BatchMaker:
    """Batches of (windows [B, W], labels [B]) mixed from the user's sampler, the mined hard
    negatives and the shipped data's sampler."""

    def __init__(self, user_sampler, shipped_sampler, room: list[np.ndarray], window: int, hop: int,
                 cfg: TuneConfig, user_recordings: int | None = None):
        self.user, self.shipped, self.room = user_sampler, shipped_sampler, room
        self.window, self.hop, self.cfg = window, hop, cfg
        # room[:user_recordings] is the user's audio, the rest the shipped data's (None: all the user's)
        self.user_recordings = len(room) if user_recordings is None else int(user_recordings)
        self.hard = []
        self.hard_positives: list[np.ndarray] = []
        self.channel = None  # trainer.channel.Channel: the user's, for cfg.channel_match

    @property
    def hard(self) -> list[tuple[int, int]]:
        """Mined windows (recording index, start); set as a whole, split once by whose audio."""
        return self._hard_all

    @hard.setter
    def hard(self, windows: list[tuple[int, int]]) -> None:
        self._hard_all = list(windows)
        self._mine = [h for h in self._hard_all if h[0] < self.user_recordings]
        self._theirs = [h for h in self._hard_all if h[0] >= self.user_recordings]

    def _pick_hard(self, rng: np.random.Generator) -> tuple[int, int]:
        mine, theirs = self._mine, self._theirs
        group = mine if mine and (not theirs or rng.random() < self.cfg.p_hard_user) else theirs
        return group[int(rng.integers(len(group)))]

    def _hard(self, rng: np.random.Generator) -> np.ndarray:
        from trainer import augment as aug

        i, start = self._pick_hard(rng)
        x = self.room[i]
        s = int(np.clip(start + rng.integers(-2 * self.hop, 2 * self.hop + 1), 0, max(0, len(x) - self.window)))
        w = x[s: s + self.window]
        if len(w) < self.window:
            w = np.pad(w, (0, self.window - len(w)))
        if i >= self.user_recordings:
            w = self._as_users(w, rng)
        return aug.random_gain(w, rng, -6.0, 6.0)

    def _as_users(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A shipped window through the user's channel, `cfg.channel_match` of the time."""
        from trainer.channel import apply_channel

        if self.channel is None or rng.random() >= self.cfg.channel_match:
            return x
        return np.clip(apply_channel(x, self.channel), -1.0, 1.0)

    def __call__(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        from trainer import augment as aug

        xs, ys = [], []
        for _ in range(self.cfg.batch):
            if self.hard_positives and rng.random() < self.cfg.p_hard_pos:
                w = self.hard_positives[int(rng.integers(len(self.hard_positives)))]
                xs.append(aug.random_gain(w, rng, -3.0, 3.0))
                ys.append(1.0)
                continue
            r = rng.random()
            if r < self.cfg.p_hard and self.hard:
                xs.append(self._hard(rng))
                ys.append(0.0)
                continue
            sampler = self.user if (r < self.cfg.p_hard + self.cfg.p_user or self.shipped is None) else self.shipped
            x, y, _ = sampler.draw(rng)
            if sampler is self.shipped and (y == 0 or self.cfg.channel_positives):
                x = self._as_users(x, rng)
            xs.append(x)
            ys.append(float(y))
        return np.stack(xs).astype(np.float32), np.asarray(ys, dtype=np.float32)


def fine_tune(net, batches: BatchMaker, cfg: TuneConfig, remine: Callable[[Any], None] | None = None,
              progress: bool = True) -> list[float]:
    """Adam on BCE, BatchNorm statistics frozen (eval mode), an L2 pull to the starting weights.
    `remine(net)` is called after each third of the steps to add the model-being-trained's own
    false triggers to the hard negatives."""
    import torch
    from torch.nn import functional as F
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 7])
    base = [p.detach().clone() for p in net.parameters()]
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    net.eval()  # frozen BatchNorm statistics: a few hundred windows must not re-estimate them
    losses: list[float] = []
    remine_at = {k * cfg.steps // cfg.mining_rounds for k in range(1, cfg.mining_rounds)}
    bar = tqdm(range(cfg.steps), desc="fine-tuning", unit="step", disable=not progress, leave=False)
    for step in bar:
        if remine is not None and step in remine_at:
            remine(net)
        x, y = batches(rng)
        logits = net(torch.from_numpy(x))
        loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(y))
        reg = sum(((p - b) ** 2).sum() for p, b in zip(params, base))
        opt.zero_grad()
        (loss + cfg.l2sp * reg).backward()
        opt.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    return losses


# ---------------------------------------------------------------------------------------------
# choosing among fine-tunings


@dataclass
class Candidate:
    """One fine-tuning, calibrated, as measured on audio it never trained on."""

    seed: int
    threshold: float
    snaps_found: int  # of the user's held-back snaps
    room_false: int  # false triggers on the user's held-back room audio
    shipped_false: int  # on the shipped data's validation negatives (0 without the data)
    final_loss: float | None = None

    @property
    def false_triggers(self) -> int:
        return self.room_false + self.shipped_false


def pick_candidate(cands: list[Candidate], slack: int = 1) -> int:
    """Index of the candidate to keep: the fewest false triggers on held-out negatives among
    those that find at least as many held-back snaps as the best one, less `slack` (a handful of
    held-back snaps cannot tell 9 from 10 apart, while minutes of negatives can tell 2 false
    triggers from 13); ties to the one that finds more snaps, then to the first."""
    if not cands:
        raise ValueError("no candidate to pick from")
    best = max(c.snaps_found for c in cands)
    ok = [i for i, c in enumerate(cands) if c.snaps_found >= best - slack]
    return min(ok, key=lambda i: (cands[i].false_triggers, -cands[i].snaps_found, i))


def count_false_triggers(score: Callable, det_spec, threshold: float, recordings: list[np.ndarray]) -> int:
    """Snap events the listener (busy guard as configured) reports on audio without a snap."""
    return sum(len(detect(score, det_spec, threshold, x, busy_seconds=None)) for x in recordings)


# ---------------------------------------------------------------------------------------------
# the whole enrollment


FOLLOW_MIN_SNAPS = 4  # held-back snaps needed to choose a follow threshold on them (a 20-clip enrollment holds back 4)


@dataclass(frozen=True)
class NetModel:
    """A trainable net seen as a loaded model file (`predict`, `metadata`), for the evaluation's
    pipeline passes (trainer.evaluate.record_pass)."""

    net: Any
    metadata: Any

    def predict(self, windows):
        import torch

        return torch.from_numpy(make_scorer(self.net)(windows.numpy()))


def choose_follow_on_gesture_scenes(model: Any, threshold: float, base_follow: float | None, user: UserClips,
                                    cfg: "TuneConfig", shipped: tuple[list, list[np.ndarray]] | None = None) -> dict:
    """The follow threshold for an enrolled model, chosen on gesture scenes of the user's held-back
    snaps over their room (trainer.gesture_scenes) by `snap-train tune`'s rule, among the candidates
    that score about the base's value's snap F1 on scenes of the shipped data's validation snaps
    over its validation audio (`shipped`: (snap clips, recordings); `tune.choose_follow_guarded`).
    The base's value stays when there are too few held-back snaps, when tuning is off, or when no
    allowed candidate counts more of the user's gestures exactly than one threshold alone: a few
    dozen gestures are no evidence against the value the base was tuned to on hundreds."""
    from trainer import gesture_scenes
    from trainer.tune import DEFAULT_CANDIDATES, choose_follow, choose_follow_guarded, follow_points

    reference = base_follow if base_follow is not None and base_follow < threshold else None
    out: dict = {"base": base_follow, "kept": reference, "tuned": False}
    if not cfg.tune_follow:
        return out | {"reason": "off (tune_follow false)"}
    if len(user.snaps_held) < FOLLOW_MIN_SNAPS:
        return out | {"reason": f"{len(user.snaps_held)} held-back snaps, fewer than {FOLLOW_MIN_SNAPS}"}
    rate = int(model.metadata.sample_rate)
    candidates = sorted(set(DEFAULT_CANDIDATES) | ({reference} if reference is not None else set()))
    def counts(recs: list) -> dict:
        return {"scenes": sum(r.role == "scene" for r in recs), "gestures": sum(len(r.gestures) for r in recs)}

    # the room joined once: the scenes' beds and, whole, their negative
    room = [gesture_scenes.room_audio(user.room_held + user.room_train, rate)]
    recs, audio = gesture_scenes.build(user.snaps_held, room, rate, n_scenes=cfg.follow_scenes, seed=cfg.seed,
                                       negatives=room)
    points = follow_points(model, recs, candidates, audio=audio, threshold=threshold)
    out |= counts(recs) | {"snaps": sum(len(r.snaps) for r in recs), "points": [p.as_dict() for p in points]}
    if shipped is not None and shipped[0] and shipped[1]:
        srecs, saudio = gesture_scenes.build(shipped[0], shipped[1], rate, n_scenes=cfg.follow_scenes,
                                             seed=cfg.seed, kind="shipped-val", negatives=shipped[1])
        guard = follow_points(model, srecs, candidates, audio=saudio, threshold=threshold)
        out["shipped_val"] = counts(srecs) | {"points": [p.as_dict() for p in guard]}
        best = choose_follow_guarded(points, guard, reference)
    else:
        best = choose_follow(points)
    if best.follow is None:
        return out | {"reason": "no candidate counted more of your gestures exactly than one threshold"
                                + (" at the shipped data's F1" if "shipped_val" in out else "")}
    return out | {"kept": best.follow, "tuned": True}


@dataclass
class EnrollResult:
    path: Path
    threshold: float
    before: dict
    after: dict
    shipped_before: dict | None
    shipped_after: dict | None
    seconds: float
    enrollment: dict


def enroll(folder: Path, out: Path, base: Path, data: Path | None, cfg: TuneConfig = TuneConfig(),
           holdout: float = 0.2, target_per_hour: float = 0.5, shipped_clips: int = 300,
           overwrite: bool = False, progress: bool = True) -> EnrollResult:
    import torch

    from snap_mqtt.detector import WindowSpec as DetSpec
    from snap_mqtt.model_file import default_model_path
    from trainer.cli import UsageError
    from trainer.data import ClipBank, MixConfig, WindowSampler, fixed_windows
    from trainer.export import build_metadata, export_model, load_trainable, window_spec_of

    t0 = time.monotonic()
    if out.exists() and not overwrite:
        raise UsageError(f"{out}: exists; enroll never overwrites a model (choose another --out, or --force)")
    if out.resolve() == base.resolve():
        raise UsageError(f"{out}: is the base model itself; write the enrolled model to another file")
    net, meta = load_trainable(base)
    spec = window_spec_of(meta)
    rate, w, hop = meta.sample_rate, meta.window_samples, meta.hop_samples
    det_spec = DetSpec.from_metadata(meta)
    merge = max(1, int(round(0.15 * rate / hop)))  # the detector's refractory time, in windows

    say = print if progress else (lambda *a, **k: None)
    user = load_user_dir(folder, rate, holdout)
    say(f"your clips: {len(user.snaps_train)} snaps to learn + {len(user.snaps_held)} held back, "
        f"{user.room_seconds(rate):.0f} s of room audio + {user.room_seconds(rate, True):.0f} s held back"
        + (f", {len(user.skipped)} files skipped" if user.skipped else ""))
    shipped = load_shipped(data, rate, shipped_clips, cfg.seed) if data is not None else None
    lookalike_seconds = add_shipped_lookalikes(shipped, cfg) if shipped is not None else 0
    if lookalike_seconds:
        say(f"look-alikes: {lookalike_seconds} s of recorded claps, clicks and knocks from the drum kits")
    typing_seconds = add_shipped_typing(shipped, cfg) if shipped is not None else 0
    if typing_seconds:
        say(f"typing: {typing_seconds} s on the recorded keyboard's train keys")

    base_score = make_scorer(net)
    # hard negatives: the listener's pipeline with the base model over the user's room audio
    hard, base_false = mine_hard_negatives(base_score, det_spec, meta.threshold, user.room_train, cfg.near_miss)
    say(f"base model: {base_false} false triggers on your room audio ({len(hard)} windows mined incl. near misses)")
    # the mining pool: the user's room audio first (indices 0..n-1), then the shipped negatives
    pool = list(user.room_train)
    if shipped is not None and cfg.mine_shipped:
        pool += shipped_negative_audio(shipped, rate)
    shipped_at = len(user.room_train)
    if len(pool) > shipped_at:
        more, _ = mine_hard_negatives(base_score, det_spec, meta.threshold, pool[shipped_at:], cfg.near_miss,
                                      offset=shipped_at)
        hard += more
        say(f"shipped data: {len(more)} windows mined from {sum(map(len, pool[shipped_at:])) / rate:.0f} s "
            "of its negatives (so that learning your snaps does not unlearn its false triggers)")

    # samplers: the trainer's own, over the user's clips (beds = the user's room) and the shipped data
    ubank = ClipBank(sample_rate=rate)
    ubank.snaps["train"] = user.snaps_train or user.snaps_held
    ubank.no_snaps["train"] = user.room_train
    if shipped is not None:
        ubank.backgrounds["train"] = shipped.backgrounds["train"]
        ubank.background_kinds["train"] = shipped.background_kinds["train"]
    user_mix = MixConfig(p_positive=cfg.user_positive, p_background_mix=0.3, snr_db=(5.0, 30.0), gain_db=(-12.0, 6.0))
    user_sampler = WindowSampler(ubank, "train", spec, user_mix)
    shipped_sampler = (WindowSampler(shipped, "train", spec, MixConfig(p_positive=cfg.shipped_positive))
                       if shipped is not None else None)
    test_wins = None
    if shipped is not None and shipped.snaps["test"] and shipped.no_snaps["test"]:
        test_sampler = WindowSampler(shipped, "test", spec, MixConfig(augment=False))
        test_wins = fixed_windows(test_sampler, 400, seed=1234)[:2]

    # before: the base model on the held-back clips (and the shipped test windows)
    before = heldout_figures(base_score, det_spec, meta.threshold, user)
    shipped_before = window_metrics(base_score, *test_wins, meta.threshold) if test_wins else None

    batches = BatchMaker(user_sampler, shipped_sampler, pool, w, hop, cfg, user_recordings=shipped_at)
    batches.hard = list(hard)
    channel = None
    if cfg.channel_match > 0 and shipped is not None and shipped.snaps["train"]:
        from trainer.channel import estimate_channel

        channel = estimate_channel(user.snaps_train or user.snaps_held, shipped.snaps["train"], rate)
        batches.channel = channel
        say(f"your channel (hand, room, mic) against the shipped snaps, dB: {channel.summary()['gain_db']}")

    def remine(current) -> None:
        more, _ = mine_hard_negatives(make_scorer(current), det_spec, meta.threshold, pool, cfg.near_miss)
        batches.hard = list(dict.fromkeys(batches.hard + more))
        current.eval()

    def calibrate(score) -> Calibration:
        """The threshold, calibrated on the held-back clips."""
        peaks = [positive_peak(scores_of(score, s.samples, w, hop), s.onset, w, hop, spec.onset_min, spec.onset_max)
                 for s in user.snaps_held]
        # false triggers are counted on all of the room audio: the held-back part alone is too
        # little to say anything about a rate per hour, and where the model still fires on audio
        # it was trained against, it fires for real
        negs = [scores_of(score, x, w, hop) for x in user.room_held + user.room_train]
        neg_hours = (user.room_seconds(rate, True) + user.room_seconds(rate)) / 3600
        return calibrate_threshold(peaks, negs, neg_hours, target_per_hour, merge,
                                   fallback=meta.threshold, floor=meta.threshold)

    # held-out negatives to choose among candidates by: the shipped data's validation part
    val_negs = validation_negatives(data, shipped, rate) if shipped is not None else []
    val_seconds = sum(map(len, val_negs)) / rate
    base_val_false = count_false_triggers(base_score, det_spec, meta.threshold, val_negs)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    mined = list(batches.hard)
    cands: list[Candidate] = []
    states, cals, helds, all_losses = [], [], [], []
    for k in range(max(1, cfg.candidates)):
        if k:
            net.load_state_dict(start)
            batches.hard = list(mined)
        ccfg = replace(cfg, seed=cfg.seed + k)
        if cfg.candidates > 1:
            say(f"fine-tuning {k + 1} of {cfg.candidates} (seed {ccfg.seed})")
        losses = fine_tune(net, batches, ccfg, remine=remine, progress=progress)
        score = make_scorer(net)
        cal = calibrate(score)
        held = heldout_figures(score, det_spec, cal.threshold, user)
        cands.append(Candidate(ccfg.seed, cal.threshold, held["snaps_found"], held["false_triggers"],
                               count_false_triggers(score, det_spec, cal.threshold, val_negs),
                               round(float(np.mean(losses[-20:])), 4) if losses else None))
        states.append({k_: v.clone() for k_, v in net.state_dict().items()})
        cals.append(cal)
        helds.append(held)
        all_losses.append(losses)
    chosen = pick_candidate(cands)
    net.load_state_dict(states[chosen])
    cal, after, losses = cals[chosen], helds[chosen], all_losses[chosen]
    if len(cands) > 1:
        say("fine-tunings: " + "; ".join(
            f"{i + 1}: {c.snaps_found} held-back snaps found, {c.room_false} + {c.shipped_false} false triggers "
            "(your room + the shipped validation negatives)" for i, c in enumerate(cands)) + f"; keeping {chosen + 1}")
    if cal.note:
        log.warning("threshold: %s", cal.note)
    follow = choose_follow_on_gesture_scenes(
        NetModel(net, meta), cal.threshold, meta.follow_threshold, user, cfg,
        shipped=(shipped.snaps["val"], val_negs) if shipped is not None else None)
    if follow["tuned"]:
        at = {p["follow"]: p["exact"] for p in follow["points"]}
        say(f"follow threshold (2nd and 3rd snaps): {follow['kept']:.2f} (the base's: {follow['base']}); "
            f"exact gestures on {follow['scenes']} scenes of your held-back snaps {at.get(follow['base'], at[None]):.3f} "
            f"-> {at[follow['kept']]:.3f}")
    score = make_scorer(net)
    before["shipped_val_false_triggers"] = base_val_false
    after["shipped_val_false_triggers"] = cands[chosen].shipped_false
    shipped_after = window_metrics(score, *test_wins, cal.threshold) if test_wins else None
    if shipped_after is not None:
        # the same windows at the base threshold: what the model forgot, apart from the threshold move
        shipped_after["f1_at_base_threshold"] = window_metrics(score, *test_wins, meta.threshold)["f1"]
    seconds = time.monotonic() - t0

    base_sha = hashlib.sha256(base.read_bytes()).hexdigest()
    default = default_model_path()
    enrollment = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "folder": str(folder),
        "base_model": base.name if base.resolve() != default.resolve() else f"default ({base.name})",
        "base_sha256": base_sha,
        "base_threshold": meta.threshold,
        "threshold": cal.threshold,
        "target_false_triggers_per_hour": target_per_hour,
        "threshold_calibration": asdict(cal),
        "clips": user.summary(rate),
        "hard_negatives": {"base_false_triggers": base_false, "mined_windows": len(batches.hard),
                           "from_shipped_data": sum(i >= shipped_at for i, _ in batches.hard),
                           "shipped_negative_seconds": round(sum(map(len, pool[shipped_at:])) / rate, 1)},
        "shipped_data": None if shipped is None else {
            "path": str(data), "train_snap": len(shipped.snaps["train"]), "train_no_snap": len(shipped.no_snaps["train"]),
            "train_background_files": len(shipped.backgrounds["train"]),
            "lookalike_kits_seconds": lookalike_seconds, "typing_seconds": typing_seconds},
        "channel": channel.summary() if channel is not None else None,
        "fine_tuning": {**asdict(cfg), "final_loss": round(float(np.mean(losses[-20:])), 4) if losses else None},
        "candidates": {"chosen_seed": cands[chosen].seed, "shipped_val_seconds": round(val_seconds, 1),
                       "tried": [asdict(c) for c in cands]},
        "follow_threshold": follow,
        "before": before, "after": after,
        "shipped_test_windows": {"before": shipped_before, "after": shipped_after},
        "seconds": round(seconds, 1),
    }
    new_meta = build_metadata(net.cfg, spec, hop, cal.threshold, data=meta.data, test_metrics=meta.test_metrics,
                              enrollment=enrollment,
                              extra={"base_extra": {k: v for k, v in meta.extra.items()
                                                    if k not in ("model_config", "window_spec")}},
                              follow_threshold=follow["kept"])
    export_model(net, new_meta, out, overwrite=overwrite)
    return EnrollResult(out, cal.threshold, before, after, shipped_before, shipped_after, seconds, enrollment)


def format_table(r: EnrollResult) -> str:
    def f(d: dict | None, k: str, fmt: str = "{}") -> str:
        return "-" if d is None or d.get(k) is None else fmt.format(d[k])

    b, a = r.before, r.after
    rows = [
        ("", "base", "enrolled"),
        ("threshold", f(b, "threshold", "{:.3f}"), f(a, "threshold", "{:.3f}")),
        (f"held-back snaps found (of {b['snaps']})", f(b, "snaps_found"), f(a, "snaps_found")),
        ("mean score of held-back snaps", f(b, "mean_snap_score", "{:.3f}"), f(a, "mean_snap_score", "{:.3f}")),
        (f"false triggers in {b['room_seconds']:.0f} s of held-back room audio", f(b, "false_triggers"),
         f(a, "false_triggers")),
    ]
    fol = r.enrollment.get("follow_threshold") or {}
    if fol:
        rows.append(("follow threshold (2nd and 3rd snaps)", f(fol, "base", "{:.2f}"), f(fol, "kept", "{:.2f}")))
    secs = (r.enrollment.get("candidates") or {}).get("shipped_val_seconds") or 0
    if secs > 0:
        rows.append((f"false triggers in {secs:.0f} s of the shipped validation negatives",
                     f(b, "shipped_val_false_triggers"), f(a, "shipped_val_false_triggers")))
    if r.shipped_before:
        rows.append(("shipped test windows: F1", f(r.shipped_before, "f1", "{:.3f}"), f(r.shipped_after, "f1", "{:.3f}")))
        rows.append(("  same, both at the base threshold", f(r.shipped_before, "f1", "{:.3f}"),
                     f(r.shipped_after, "f1_at_base_threshold", "{:.3f}")))
    w0 = max(len(x[0]) for x in rows)
    return "\n".join(f"{x[0]:<{w0}}  {x[1]:>8}  {x[2]:>8}" for x in rows)


# ---------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainer.train import add_recorded_negative_arguments

    parser.add_argument("dir", type=Path, help="your recordings: DIR/snap and DIR/no_snap (any rate, any length)")
    parser.add_argument("--out", type=Path, required=True, help="the new model file (never overwritten without --force)")
    parser.add_argument("--base", type=Path, default=None, help="model to start from (default: the shipped default model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="shipped training data, mixed in so the model forgets nothing (default ../shared/data)")
    parser.add_argument("--steps", type=int, default=TuneConfig.steps, help="fine-tuning steps (default %(default)s)")
    parser.add_argument("--batch", type=int, default=TuneConfig.batch, help="windows per step (default %(default)s)")
    parser.add_argument("--lr", type=float, default=TuneConfig.lr, help="learning rate (default %(default)s)")
    parser.add_argument("--target-fph", type=float, default=0.5,
                        help="false triggers per hour allowed on your held-back room audio when calibrating the threshold")
    parser.add_argument("--holdout", type=float, default=0.2, help="share of your clips held back (default %(default)s)")
    parser.add_argument("--shipped-clips", type=int, default=300,
                        help="shipped training clips per class mixed in (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    add_recorded_negative_arguments(parser, TuneConfig.lookalike_seconds, TuneConfig.typing_seconds,
                                    "replayed as negatives with the shipped data")
    parser.add_argument("--channel-match", type=float, default=TuneConfig.channel_match, metavar="SHARE",
                        help="share of the replayed shipped data heard through your channel (hand, room, mic) "
                             "as estimated from your snaps (0: never; default %(default)s)")
    parser.add_argument("--candidates", type=int, default=TuneConfig.candidates, metavar="K",
                        help="fine-tune K times from different seeds and keep the one with the fewest false "
                             "triggers on held-out audio (fewer on ordinary sounds, less sensitive in your "
                             "room; K times as long; default %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> int:
    import torch

    from snap_mqtt.model_file import default_model_path
    from trainer.cli import UsageError
    from trainer.train import lookalike_kits, typing_seconds

    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.dir.is_dir():
        raise UsageError(f"{args.dir}: no such folder (expected DIR/snap and DIR/no_snap)")
    if args.steps < 1 or args.batch < 2 or not 0 <= args.holdout < 0.9 or args.target_fph < 0:
        raise UsageError("--steps >= 1, --batch >= 2, 0 <= --holdout < 0.9 and --target-fph >= 0, please")
    if args.candidates < 1:
        raise UsageError(f"--candidates {args.candidates}: at least 1, please")
    if not 0 <= args.channel_match <= 1:
        raise UsageError(f"--channel-match {args.channel_match}: a share between 0 and 1, please")
    lookalike_kits(args.lookalike_kits)
    typing_seconds(args.typing)
    base = args.base or default_model_path()
    cfg = TuneConfig(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                     lookalike_seconds=args.lookalike_kits, kits=str(args.kits) if args.kits else None,
                     typing_seconds=args.typing, keyboard=str(args.keyboard) if args.keyboard else None,
                     channel_match=args.channel_match, candidates=args.candidates)
    r = enroll(args.dir, args.out, base, args.data, cfg, holdout=args.holdout, target_per_hour=args.target_fph,
               shipped_clips=args.shipped_clips, overwrite=args.force)
    print(format_table(r))
    print(f"wrote {r.path} (threshold {r.threshold:.3f}) in {r.seconds:.0f} s; use it with "
          f"`snap-mqtt listen --model {r.path}` or SNAP_MODEL_PATH={r.path}")
    return 0
