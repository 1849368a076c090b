"""`snap-train polish`: the last training stage, event-level hard-negative fine-tuning.

    snap-train polish models/snap-default.pt --data ../shared/data --out runs/polished.pt

Window-level training draws windows at random; the listener fires on events. This stage runs the
listener's own SnapPipeline over the training and validation parts' negative audio (their no_snap
clips joined end to end and their backgrounds, never the test part or the evaluation backgrounds),
and trains against every window where it fires, near misses at 0.3x the threshold included,
mining again after each third of the steps: enrollment's fine-tuning (`trainer.finetune`), with the
training part's own windows in place of a user's. The threshold stays the one the model was
calibrated with, and so does its follow threshold (`snap-train tune`); the test windows are scored
again and the metadata records both.

`snap-train train` ends with it (`--polish-steps`, 0 to skip).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from trainer.cli import UsageError

log = logging.getLogger(__name__)

DEFAULT_STEPS = 500
NEGATIVE_SPLITS = ("train", "val")  # the test part stays unseen
# share of each batch from mined hard positives (`trainer.finetune.mine_hard_positives`): training snaps
# the detector would miss or decide late. With the soup below it added recall and decided snaps
# sooner at the same false triggers (model card rows 18 and 21)
DEFAULT_HARD_POSITIVES = 0.1
# polishes from the same start with seeds seed..seed+N-1, weights averaged (a "model soup"): one
# polish's false triggers vary 2x with its seed; averaging three halved them (model card row 21)
DEFAULT_SOUP = 3


def check_soup(n: int, flag: str) -> None:
    """A UsageError naming `flag` unless 1 <= n <= 16."""
    if not 1 <= n <= 16:
        raise UsageError(f"{flag} {n}: expected 1 to 16 polishes")


def negative_audio(bank: Any, splits: tuple[str, ...] = NEGATIVE_SPLITS) -> list[np.ndarray]:
    """The parts' backgrounds and their no_snap clips joined end to end, as recordings to mine."""
    from trainer.finetune import shipped_negative_audio

    return shipped_negative_audio(bank, bank.sample_rate, splits)


def polish(net: Any, sampler: Any, pool: list[np.ndarray], det_spec: Any, steps: int = DEFAULT_STEPS,
           seed: int = 0, progress: bool = True, hard_positive_share: float = DEFAULT_HARD_POSITIVES,
           soup: int = 1) -> dict:
    """Fine-tune `net` in place against the pipeline's detections on `pool` (and, with
    `hard_positive_share`, against its own missed snap windows); returns what was done. With
    `soup` > 1, that many polishes from the same weights (seeds seed, seed+1, ...) are averaged:
    they share the start and the frozen BatchNorm statistics, so their mean is a model of the same
    family, and less at the mercy of one seed's draws."""
    if soup < 1:
        raise ValueError(f"soup must be >= 1, got {soup}")
    if soup == 1:
        return _polish_once(net, sampler, pool, det_spec, steps, seed, progress, hard_positive_share)
    t0 = time.monotonic()
    start = {k: v.detach().clone() for k, v in net.state_dict().items()}
    states, members = [], []
    for k in range(soup):
        net.load_state_dict(start)
        members.append(_polish_once(net, sampler, pool, det_spec, steps, seed + k, progress, hard_positive_share))
        states.append({n: v.detach().clone() for n, v in net.state_dict().items()})
    net.load_state_dict(average_states(states))
    net.eval()
    # the first member's record, as a single polish reports it, and every member's mining
    info = dict(members[0])
    info["soup"] = [{"seed": seed + k, "steps": m["steps"], "mining_rounds": m["mining_rounds"],
                     "final_loss": m["final_loss"]} for k, m in enumerate(members)]
    info["seconds"] = round(time.monotonic() - t0, 1)
    return info


def average_states(states: list[dict], weights: list[float] | None = None) -> dict:
    """The element-wise (weighted) mean of state dicts of one architecture (integer buffers, such as
    BatchNorm's batch count, from the first). `weights`: one per state, summing to 1 (default equal)."""
    out = {}
    for name, first in states[0].items():
        if not first.is_floating_point():
            out[name] = first.clone()
        elif weights is None:
            out[name] = sum(s[name] for s in states) / len(states)
        else:
            out[name] = sum(s[name] * w for s, w in zip(states, weights))
    return out


def _polish_once(net: Any, sampler: Any, pool: list[np.ndarray], det_spec: Any, steps: int, seed: int,
                 progress: bool, hard_positive_share: float) -> dict:
    from trainer import finetune as ft

    cfg = ft.TuneConfig(steps=steps, p_user=0.7, p_hard=0.3, seed=seed, p_hard_pos=hard_positive_share)
    t0 = time.monotonic()
    rng = np.random.default_rng([seed, 11])
    draws = cfg.hard_positive_draws if cfg.p_hard_pos > 0 else 0
    hard, fired = ft.mine_hard_negatives(ft.make_scorer(net), det_spec, det_spec.threshold, pool, cfg.near_miss)
    batches = ft.BatchMaker(sampler, None, pool, det_spec.window_samples, det_spec.hop_samples, cfg)
    batches.hard = list(hard)
    hop = det_spec.hop_samples
    pos, snaps = ft.mine_hard_positives(ft.make_scorer(net), sampler, draws, det_spec.threshold, hop, rng)
    batches.hard_positives = pos
    rounds = [{"windows": len(hard), "false_triggers": fired, "hard_positives": len(batches.hard_positives), **snaps}]

    def remine(current) -> None:
        score = ft.make_scorer(current)
        more, n = ft.mine_hard_negatives(score, det_spec, det_spec.threshold, pool, cfg.near_miss)
        batches.hard = list(dict.fromkeys(batches.hard + more))
        pos, snaps = ft.mine_hard_positives(score, sampler, draws, det_spec.threshold, hop, rng)
        batches.hard_positives = batches.hard_positives + pos
        rounds.append({"windows": len(more), "false_triggers": n, "hard_positives": len(pos), **snaps})
        current.eval()

    todo = bool(hard or batches.hard_positives)
    if todo:
        losses = ft.fine_tune(net, batches, cfg, remine=remine, progress=progress)
    else:  # nothing fires on the negatives, not even near misses, and no snap is missed: nothing to learn
        losses = []
    return {"steps": steps if todo else 0, "settings": asdict(cfg), "hard_positive_draws": draws,
            "negative_seconds": round(sum(map(len, pool)) / det_spec.sample_rate, 1),
            "mining_rounds": rounds, "hard_windows": len(batches.hard),
            "final_loss": round(float(np.mean(losses[-20:])), 4) if losses else None,
            "seconds": round(time.monotonic() - t0, 1)}


def det_spec_for(spec: Any, hop: int, threshold: float) -> Any:
    """The detector's view of a trainer WindowSpec at a threshold."""
    from snap_mqtt.detector import WindowSpec as DetSpec

    return DetSpec(spec.sample_rate, spec.window_samples, hop, float(threshold), spec.onset_min, spec.onset_max)


# ---------------------------------------------------------------------------------------------
# the subcommand


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainer.train import DEFAULT_DATA, TrainConfig, add_background_arguments

    parser.add_argument("model", type=Path, help="model file written by snap-train (train or enroll)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data folder (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the polished model")
    parser.add_argument("--overwrite", action="store_true", help="allow --out to replace an existing file")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="fine-tuning steps (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--soup", type=int, default=DEFAULT_SOUP, metavar="N",
                        help="polish N times from the same model (seeds SEED..SEED+N-1) and average the "
                             "weights; 1: a single polish (default: %(default)s)")
    parser.add_argument("--hard-positives", type=float, default=DEFAULT_HARD_POSITIVES, metavar="SHARE",
                        help="share of each batch from mined hard positives: windows of training snaps the "
                             "detector would miss or decide late, mined again each round (default: %(default)s)")
    parser.add_argument("--test-windows", type=int, default=TrainConfig.test_windows,
                        help="test windows scored before and after (default: %(default)s)")
    add_background_arguments(parser)
    parser.add_argument("--positive-snr", default=None, metavar="LO,HI",
                        help="local SNR range in dB of the training background under mixed positives "
                             "(default: the trainer's, 0,30); lower hears quieter snaps, and fires more")
    parser.add_argument("--positive-background", type=float, default=None, metavar="SHARE",
                        help="share of positives with a training background mixed under them (default: the "
                             "trainer's, 0.6)")
    parser.add_argument("--threads", type=int, default=TrainConfig.threads, help="torch threads (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def positive_mix(mix: Any, snr: str | None, share: float | None) -> Any:
    """`mix` with the positives' background SNR range ("LO,HI" dB) and share replaced where given."""
    from dataclasses import replace

    changes: dict[str, Any] = {}
    if snr is not None:
        try:
            lo, hi = (float(v) for v in snr.split(","))
        except ValueError:
            raise UsageError(f"--positive-snr {snr!r}: expected LO,HI in dB, such as -3,25") from None
        if not -20.0 <= lo < hi <= 60.0:
            raise UsageError(f"--positive-snr {snr!r}: expected -20 <= LO < HI <= 60")
        changes["snr_db"] = (lo, hi)
    if share is not None:
        if not 0.0 <= share <= 1.0:
            raise UsageError(f"--positive-background {share}: expected a share in [0, 1]")
        changes["p_background_mix"] = float(share)
    return replace(mix, **changes)


def run(args: argparse.Namespace) -> int:
    import torch

    from trainer.data import MixConfig, WindowSampler
    from trainer.export import build_metadata, export_model, load_trainable, window_spec_of
    from trainer.train import (check_background_arguments, evaluate_windows, extend_backgrounds, prepare_data,
                               test_window_set)

    if args.steps <= 0:
        raise UsageError("--steps must be positive")
    check_soup(args.soup, "--soup")
    if not 0.0 <= args.hard_positives < 1.0:
        raise UsageError("--hard-positives must lie in [0, 1)")
    check_background_arguments(args)
    if not args.model.is_file():
        raise UsageError(f"{args.model}: no such model file")
    if args.out.exists() and not args.overwrite:
        raise UsageError(f"{args.out}: exists; pass --overwrite to replace it")
    if args.out.exists() and args.out.resolve() == args.model.resolve():
        raise UsageError(f"{args.out}: is the model being polished; write to another file")
    mix = positive_mix(MixConfig(), args.positive_snr, args.positive_background)
    torch.set_num_threads(max(1, args.threads))
    t0 = time.monotonic()
    net, meta = load_trainable(args.model)
    spec = window_spec_of(meta)
    _, bank = prepare_data(args.data, spec, mix, progress=not args.no_progress)
    extended = extend_backgrounds(bank, args)
    test = test_window_set(bank, spec, args.test_windows)
    before = evaluate_windows(net, test, meta.threshold)

    pool = negative_audio(bank)
    det = det_spec_for(spec, meta.hop_samples, meta.threshold)
    info = polish(net, WindowSampler(bank, "train", spec, mix), pool, det, args.steps, args.seed,
                  progress=not args.no_progress, hard_positive_share=args.hard_positives, soup=args.soup)
    after = evaluate_windows(net, test, meta.threshold)
    info.update(**extended, base=args.model.name,
                base_sha256=hashlib.sha256(args.model.read_bytes()).hexdigest(),
                date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                test_windows_before={k: before[k] for k in ("precision", "recall", "f1", "auroc")},
                positive_mix={"snr_db": list(mix.snr_db), "p_background_mix": mix.p_background_mix})
    extra = {k: v for k, v in meta.extra.items() if k not in ("model_config", "window_spec")}
    if "polish" in extra:  # a model polished again: keep the lineage
        extra["earlier_polishes"] = [*extra.get("earlier_polishes", []), extra["polish"]]
    extra["polish"] = info
    new_meta = build_metadata(net.cfg, spec, meta.hop_samples, meta.threshold, data=meta.data,
                              test_metrics={**after, "val": meta.test_metrics.get("val")}, enrollment=meta.enrollment,
                              extra=extra, follow_threshold=meta.follow_threshold)
    try:
        path = export_model(net, new_meta, args.out, overwrite=args.overwrite)
    except FileExistsError as exc:
        raise UsageError(str(exc)) from None
    for m in info.get("soup", [info]):
        rounds = ", ".join(f"{r['false_triggers']} ({r['windows']} windows)" for r in m["mining_rounds"])
        who = f"polish with seed {m['seed']}: " if "soup" in info else ""
        print(f"{who}false triggers on {info['negative_seconds']:.0f} s of training/validation negatives, "
              f"per mining round: {rounds}")
    if "soup" in info:
        print(f"the {len(info['soup'])} polishes averaged into one model")
    if args.hard_positives > 0:
        for m in info.get("soup", [info]):
            print("training snaps missed / decided late, per mining round: "
                  + ", ".join(f"{r['missed']} / {r['late']} of {r['snaps']}" for r in m["mining_rounds"]))
    print(f"test windows at threshold {meta.threshold:.3f}: precision {before['precision']:.4f} -> "
          f"{after['precision']:.4f}, recall {before['recall']:.4f} -> {after['recall']:.4f}, "
          f"F1 {before['f1']:.4f} -> {after['f1']:.4f}")
    print(f"wrote {path} in {time.monotonic() - t0:.0f} s")
    return 0
