"""`snap-train enroll DIR --out FILE`: fine-tune a model on your own snaps and your own room.

DIR holds `snap/` (clips with one snap each: any rate, any length) and `no_snap/` (your room's
ordinary sound and its look-alikes: claps, knocks, typing; long recordings are cut into windows),
as written by `snap-train record --guided DIR` or sorted by `snap-train label` (clips the
listener saved with `capture_dir` feed straight in). `DIR/review/` is ignored.

Steps:
1. hold back about a fifth of the clips (every fifth snap clip in a hash order, the last fifth of
   every room recording) for the before/after table and the threshold: never trained on;
2. mine hard negatives: run the listener's own SnapPipeline with the base model over your room
   audio; every detection there is a false trigger (and near misses, at 0.3 x the threshold, too);
3. fine-tune the base model (`trainer.export.load_trainable`) on windows of your clips (the
   trainer's own window sampler: your snaps placed in your room's sound, early/late snaps as
   negatives), the mined false triggers, and a sample of the shipped training data so it forgets
   nothing; an L2 pull towards the base weights keeps it close; BatchNorm statistics stay frozen;
   your windows are drawn down to `--quietest-gain` (-36 dB: your snaps from across the room) and
   `--quiet-negatives` of the shipped negatives as quiet; after each third of the steps, mine again
   with the model being trained; then `--base-mix` (0.25) of the base's weights are mixed back in
   (WiSE-FT: fewer false triggers, fewer snaps heard);
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

This module is the flow; its parts live where they can be read alone: the user's folder and its
hold-out in `trainer.user_clips` (step 1), scoring, mining and the fine-tuning itself in
`trainer.finetune` (steps 2-3, shared with `snap-train polish`), the threshold's calibration in
`trainer.calibration` (step 4), the user's channel in `trainer.channel` and the gesture scenes in
`trainer.gesture_scenes` (step 5).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from trainer.calibration import Calibration, calibrate_threshold, positive_peak
from trainer.finetune import (
    BatchMaker, TuneConfig, detect, fine_tune, make_scorer, mine_hard_negatives, mix_towards, scores_of,
    shipped_negative_audio,
)
from trainer.user_clips import UserClips, load_user_dir

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"
MATCH_S = 0.15  # a held-back snap is found when an event's onset lies this close to the true onset


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


def user_mix(cfg: TuneConfig):
    """How the user's windows are drawn (a trainer.data.MixConfig): their snaps on beds of their
    room, a shipped background under 30 % of them, a gain from `cfg.user_gain_min_db` to +6 dB."""
    from trainer.data import MixConfig

    return MixConfig(p_positive=cfg.user_positive, p_background_mix=0.3, snr_db=(5.0, 30.0),
                     gain_db=(cfg.user_gain_min_db, 6.0))


def _scene_counts(recs: list) -> dict:
    return {"scenes": sum(r.role == "scene" for r in recs), "gestures": sum(len(r.gestures) for r in recs)}


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
    # the room joined once: the scenes' beds and, whole, their negative
    room = [gesture_scenes.room_audio(user.room_held + user.room_train, rate)]
    recs, audio = gesture_scenes.build(user.snaps_held, room, rate, n_scenes=cfg.follow_scenes, seed=cfg.seed,
                                       negatives=room)
    points = follow_points(model, recs, candidates, audio=audio, threshold=threshold)
    out |= _scene_counts(recs) | {"snaps": sum(len(r.snaps) for r in recs), "points": [p.as_dict() for p in points]}
    if shipped is not None and shipped[0] and shipped[1]:
        srecs, saudio = gesture_scenes.build(shipped[0], shipped[1], rate, n_scenes=cfg.follow_scenes,
                                             seed=cfg.seed, kind="shipped-val", negatives=shipped[1])
        guard = follow_points(model, srecs, candidates, audio=saudio, threshold=threshold)
        out["shipped_val"] = _scene_counts(srecs) | {"points": [p.as_dict() for p in guard]}
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
    user_sampler = WindowSampler(ubank, "train", spec, user_mix(cfg))
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
        if cfg.base_mix > 0:
            net.load_state_dict(mix_towards(net.state_dict(), start, cfg.base_mix))
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
    parser.add_argument("--base-mix", type=float, default=TuneConfig.base_mix, metavar="SHARE",
                        help="share of the base model's weights mixed back into the fine-tuned ones before the "
                             "threshold is calibrated (more: fewer false triggers in your room and on other "
                             "sounds, fewer of your snaps heard; 0: none; default %(default)s)")
    parser.add_argument("--quietest-gain", type=float, default=TuneConfig.user_gain_min_db, metavar="DB",
                        help="the quietest gain your snaps and room are drawn at in fine-tuning (default "
                             "%(default)s dB: it also learns your snaps that arrive 20-40 dB below full scale, "
                             "far away or through a microphone with little gain, and fires more often on quiet "
                             "knocks and claps you did not record; -12: neither, as before 2026-12-06)")
    parser.add_argument("--quiet-negatives", type=float, default=TuneConfig.quiet_negatives, metavar="SHARE",
                        help="share of the replayed shipped negatives drawn as quiet as --quietest-gain "
                             "(quiet hits heard as negatives beside your quiet snaps; default %(default)s)")
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
    if not 0 <= args.base_mix < 1:
        raise UsageError(f"--base-mix {args.base_mix}: a share from 0 up to (not including) 1, please")
    if not -60 <= args.quietest_gain <= 0:
        raise UsageError(f"--quietest-gain {args.quietest_gain}: a gain from -60 to 0 dB, please")
    if not 0 <= args.quiet_negatives <= 1:
        raise UsageError(f"--quiet-negatives {args.quiet_negatives}: a share between 0 and 1, please")
    if not 0 <= args.channel_match <= 1:
        raise UsageError(f"--channel-match {args.channel_match}: a share between 0 and 1, please")
    lookalike_kits(args.lookalike_kits)
    typing_seconds(args.typing)
    base = args.base or default_model_path()
    cfg = TuneConfig(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                     lookalike_seconds=args.lookalike_kits, kits=str(args.kits) if args.kits else None,
                     typing_seconds=args.typing, keyboard=str(args.keyboard) if args.keyboard else None,
                     channel_match=args.channel_match, candidates=args.candidates, base_mix=args.base_mix,
                     user_gain_min_db=args.quietest_gain, quiet_negatives=args.quiet_negatives)
    r = enroll(args.dir, args.out, base, args.data, cfg, holdout=args.holdout, target_per_hour=args.target_fph,
               shipped_clips=args.shipped_clips, overwrite=args.force)
    print(format_table(r))
    print(f"wrote {r.path} (threshold {r.threshold:.3f}) in {r.seconds:.0f} s; use it with "
          f"`snap-mqtt listen --model {r.path}` or SNAP_MODEL_PATH={r.path}")
    return 0
