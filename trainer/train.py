"""`snap-train train`: train a snap model on a data folder, report on it, and export it.

    snap-train train --data ../shared/data --out runs/default --export models/snap-default.pt --overwrite

Reusable pieces (enrollment fine-tunes with them): `prepare_data`, `fit`, `score_windows`,
`evaluate_windows`, and `trainer.export.export_model` / `load_trainable`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer.cli import UsageError
from trainer.polish import DEFAULT_HARD_POSITIVES, DEFAULT_SOUP, check_soup

if TYPE_CHECKING:
    import numpy as np

    from trainer.data import ClipBank, MixConfig, WindowSampler, WindowSpec
    from trainer.model import SnapNet

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"
HOP_SAMPLES = 320  # the listener scores a window every 20 ms at 16 kHz
# speech and music played faster and slower: more voices and tunes than the data holds (docs/training.md)
DEFAULT_BACKGROUND_SPEEDS = "0.85,0.93,1.08,1.18"
# seconds of synthetic drum-kit songs among the training music (trainer.percussion; docs/training.md)
DEFAULT_SYNTHETIC_DRUMS = 600.0
DEFAULT_LOOKALIKE_KITS = 1800.0
DEFAULT_MUSIC_PACKAGES = 0.0


@dataclass
class TrainConfig:
    seed: int = 1234
    max_epochs: int = 25
    patience: int = 6
    batch_size: int = 64
    epoch_windows: int = 4096
    val_windows: int = 3000
    test_windows: int = 4000
    lr: float = 2e-3
    weight_decay: float = 1e-4
    spec_augment: bool = True
    threshold_beta: float = 0.5
    hop_samples: int = HOP_SAMPLES
    threads: int = 2
    progress: bool = True


@dataclass
class WindowSet:
    x: "np.ndarray"  # [N, window] float32
    y: "np.ndarray"  # [N] 0/1
    kinds: list[str]


@dataclass
class FitResult:
    net: "SnapNet"
    history: list[dict[str, float]]
    best_epoch: int
    epochs_run: int
    seconds: float
    checkpoint: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="data folder with snap/, no_snap/ and optional background/ (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None,
                        help="run folder for manifest, logs, checkpoints and report (default: runs/train-TIMESTAMP); "
                             "must not exist yet")
    parser.add_argument("--export", type=Path, default=None,
                        help="write the model file here (default: OUT/model.pt)")
    parser.add_argument("--overwrite", action="store_true", help="allow --export to replace an existing model file")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this model file's weights (fine-tuning) instead of random ones")
    parser.add_argument("--epochs", type=int, default=d.max_epochs, help="maximum epochs (default: %(default)s)")
    parser.add_argument("--patience", type=int, default=d.patience,
                        help="early stopping: epochs without val_loss improvement (default: %(default)s)")
    parser.add_argument("--epoch-windows", type=int, default=d.epoch_windows,
                        help="training windows synthesised per epoch (default: %(default)s)")
    parser.add_argument("--val-windows", type=int, default=d.val_windows, help="(default: %(default)s)")
    parser.add_argument("--test-windows", type=int, default=d.test_windows, help="(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="(default: %(default)s)")
    parser.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="(default: %(default)s)")
    parser.add_argument("--threshold-beta", type=float, default=d.threshold_beta,
                        help="calibrate the threshold for the best F-beta on validation windows; "
                             "<1 favours precision (default: %(default)s)")
    parser.add_argument("--no-spec-augment", action="store_true", help="disable SpecAugment masks")
    parser.add_argument("--no-augment", action="store_true",
                        help="disable gain / band-limit augmentation (snaps are still mixed into backgrounds)")
    parser.add_argument("--mine-rounds", type=int, default=1,
                        help="rounds of hard-negative mining over the training backgrounds (default: %(default)s)")
    parser.add_argument("--mine-epochs", type=int, default=8,
                        help="epochs of training after each mining round (default: %(default)s)")
    parser.add_argument("--polish-steps", type=int, default=500,
                        help="last stage: fine-tune against where the listener's pipeline fires on the training and "
                             "validation negatives (trainer/polish.py); 0 skips it (default: %(default)s)")
    parser.add_argument("--polish-soup", type=int, default=DEFAULT_SOUP, metavar="N",
                        help="polish N times from the trained weights (seeds SEED..SEED+N-1) and average them; "
                             "1: a single polish (default: %(default)s)")
    parser.add_argument("--polish-hard-positives", type=float, default=DEFAULT_HARD_POSITIVES, metavar="SHARE",
                        help="share of the polish's batches from training snaps it would miss or decide late; "
                             "0 turns that off (default: %(default)s)")
    add_background_arguments(parser)
    parser.add_argument("--n-mels", type=int, default=None, help="mel bins of the front end (default: 40)")
    parser.add_argument("--channels", type=str, default=None,
                        help="ConvNet channels, comma-separated (default: 8,16,32,64)")
    parser.add_argument("--threads", type=int, default=d.threads, help="torch threads (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


# ---------------------------------------------------------------- reusable pieces


def prepare_data(data_dir: Path, spec: "WindowSpec", mix: "MixConfig", progress: bool = True):
    """scan + load: (manifest DataFrame, ClipBank). Raises UsageError for unusable data."""
    from trainer.data import load_clip_bank, scan_data

    manifest = scan_data(data_dir)
    def prog(it):
        from tqdm import tqdm

        return tqdm(it, desc="loading clips", unit="file")

    bank = load_clip_bank(manifest, data_dir, spec.sample_rate, min_snap_onset=mix.min_snap_onset,
                          progress=prog if progress else None)
    return manifest, bank


def make_window_set(sampler: "WindowSampler", n: int, seed: int) -> WindowSet:
    from trainer.data import fixed_windows

    x, y, kinds = fixed_windows(sampler, n, seed)
    return WindowSet(x, y, kinds)


def score_windows(net: "SnapNet", x: "np.ndarray", batch: int = 512) -> "np.ndarray":
    """Snap probabilities for windows [N, window] (eval mode, no grad)."""
    import numpy as np
    import torch

    was_training = net.training
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(torch.sigmoid(net(torch.from_numpy(np.ascontiguousarray(x[i:i + batch])))).numpy())
    net.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def evaluate_windows(net: "SnapNet", ws: WindowSet, threshold: float) -> dict[str, Any]:
    from trainer.report import binary_metrics

    return binary_metrics(score_windows(net, ws.x), ws.y, threshold, ws.kinds)


def fit(net: "SnapNet", train_sampler: "WindowSampler", val: WindowSet, cfg: TrainConfig,
        out_dir: Path) -> FitResult:
    """Train `net` (fresh, or loaded with `trainer.export.load_trainable` to fine-tune) on windows
    drawn from `train_sampler`, early-stopping and checkpointing on val_loss over `val`.
    Returns the net with the best epoch's weights. Logs TensorBoard under out_dir/tb."""
    import copy

    import lightning as L
    import torch
    from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch.utils.data import DataLoader, TensorDataset

    from trainer.data import window_dataset
    from trainer.lightning_module import SnapLightning

    torch.set_num_threads(max(1, cfg.threads))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    net.train()  # Lightning keeps each module's mode: a net left in eval mode would train with frozen BatchNorm
    module = SnapLightning(net, lr=cfg.lr, weight_decay=cfg.weight_decay, max_epochs=cfg.max_epochs,
                           spec_augment=cfg.spec_augment)
    train_dl = DataLoader(window_dataset(train_sampler, cfg.epoch_windows, cfg.seed), batch_size=cfg.batch_size,
                          shuffle=False, num_workers=0, drop_last=True)
    val_dl = DataLoader(TensorDataset(torch.from_numpy(val.x), torch.from_numpy(val.y).float()),
                        batch_size=512, shuffle=False)

    best = {"loss": float("inf"), "state": None, "epoch": -1}

    class _KeepBest(Callback):
        def on_validation_end(self, trainer, pl_module):
            if trainer.sanity_checking:
                return
            loss = float(trainer.callback_metrics.get("val_loss", float("inf")))
            if loss < best["loss"]:
                best.update(loss=loss, state=copy.deepcopy(pl_module.net.state_dict()), epoch=trainer.current_epoch)

    ckpt = ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="best-{epoch}-{val_loss:.4f}",
                           monitor="val_loss", mode="min", save_top_k=1, save_last=True)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=cfg.max_epochs, logger=TensorBoardLogger(out_dir, name="tb"),
        callbacks=[EarlyStopping(monitor="val_loss", mode="min", patience=cfg.patience), ckpt, _KeepBest()],
        enable_progress_bar=cfg.progress, enable_model_summary=False, num_sanity_val_steps=0,
        log_every_n_steps=10, deterministic=False)
    t0 = time.perf_counter()
    trainer.fit(module, train_dl, val_dl)
    seconds = time.perf_counter() - t0
    if best["state"] is not None:
        net.load_state_dict(best["state"])
    net.eval()
    return FitResult(net=net, history=module.history, best_epoch=int(best["epoch"]), epochs_run=trainer.current_epoch,
                     seconds=seconds, checkpoint=str(ckpt.best_model_path))


# ---------------------------------------------------------------- the subcommand


def add_background_arguments(parser: argparse.ArgumentParser) -> None:
    """`--background-speeds` and `--synthetic-drums`, as `train` and `polish` take them."""
    parser.add_argument("--background-speeds", default=DEFAULT_BACKGROUND_SPEEDS,
                        help="speed factors for extra copies of the training speech and music "
                             "(trainer.data.add_speed_variants), or 'none' (default: %(default)s)")
    parser.add_argument("--synthetic-drums", type=float, default=DEFAULT_SYNTHETIC_DRUMS, metavar="SECONDS",
                        help="seconds of synthetic drum-kit songs added to the training music "
                             "(trainer.percussion; 0: none; default: %(default)s)")
    parser.add_argument("--music-packages", type=float, default=DEFAULT_MUSIC_PACKAGES, metavar="SECONDS",
                        help="seconds of real music from the training music packages (trainer.music: "
                             "planetblupi, asc, freedroidrpg, ...), played in simulated rooms, added to the "
                             "training music (0: none; default: %(default)s)")
    parser.add_argument("--music-root", type=Path, default=Path("/"),
                        help="where the music packages are installed (default /)")
    add_recorded_negative_arguments(parser, DEFAULT_LOOKALIKE_KITS, 0.0, "added to the training backgrounds")


def add_recorded_negative_arguments(parser: argparse.ArgumentParser, kits_seconds: float, typing_seconds: float,
                                    where: str) -> None:
    """`--lookalike-kits`/`--kits` and `--typing`/`--keyboard`: recorded look-alikes installed outside
    the data folder (train and polish add them to the training backgrounds, enroll replays them)."""
    parser.add_argument("--lookalike-kits", type=float, default=kits_seconds, metavar="SECONDS",
                        help="seconds of recorded claps, clicks and knocks from the training drum kits "
                             f"(trainer.drumkits, Debian's hydrogen-drumkits) {where} (0: none; default: %(default)s)")
    parser.add_argument("--kits", type=Path, default=None,
                        help="Hydrogen drum kits folder (default: /usr/share/hydrogen/data/drumkits)")
    parser.add_argument("--typing", type=float, default=typing_seconds, metavar="SECONDS",
                        help="seconds of typing on the train half of a recorded buckling-spring keyboard "
                             f"(trainer.keyboard, Debian's bucklespring-data) {where} (0: none; default: %(default)s)")
    parser.add_argument("--keyboard", type=Path, default=None,
                        help="the keyboard's recordings (default: /usr/share/buckle/wav)")


def extend_backgrounds(bank: Any, args: argparse.Namespace) -> dict:
    """Grow the training part's backgrounds as `--background-speeds`, `--synthetic-drums`,
    `--lookalike-kits` and `--music-packages` say;
    returns what was added (for the model's metadata). Validation and test audio stay as recorded."""
    from trainer.data import add_lookalike_kits, add_music_packages, add_speed_variants, add_synthetic_drums
    from trainer.drumkits import DEFAULT_ROOT, training_kit_licences
    from trainer.music import training_licences

    speeds = background_speeds(args.background_speeds)
    drums = synthetic_drums(args.synthetic_drums)
    looks = lookalike_kits(args.lookalike_kits)
    music = music_packages(args.music_packages)
    added = {"background_speeds": list(speeds), "synthetic_drums_seconds": drums}
    if speeds:
        print(f"background speeds {speeds}: {add_speed_variants(bank, speeds)} s of speech and music added")
    if drums:
        print(f"synthetic drums: {add_synthetic_drums(bank, drums)} s of drum-kit songs added to the music")
    if looks:
        kits = args.kits or DEFAULT_ROOT
        n = _recorded("--lookalike-kits", add_lookalike_kits, bank, looks, kits)
        added.update(lookalike_kits_seconds=n, lookalike_kits=training_kit_licences(kits))
        print(f"look-alikes: {n} s of recorded claps, clicks and knocks from the training kits in {kits}")
    typing = typing_seconds(args.typing)
    if typing:
        from trainer.data import add_typing

        n = _recorded("--typing", add_typing, bank, typing, args.keyboard)
        added.update(typing_seconds=n)
        print(f"typing: {n} s on the train half of the keyboard's keys")
    if music:
        n = _recorded("--music-packages", add_music_packages, bank, music, args.music_root)
        added.update(music_packages_seconds=n, music_packages=training_licences(args.music_root))
        print(f"music: {n} s of the training music packages' tracks in simulated rooms")
    return added


def _recorded(flag: str, add: Any, *args: Any) -> int:
    """Add recordings installed outside the data folder; missing ones are a UsageError naming `flag`."""
    try:
        return add(*args)
    except FileNotFoundError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def check_background_arguments(args: argparse.Namespace) -> None:
    """Bad background flags (and music asked for but not installed) fail before anything is loaded."""
    background_speeds(args.background_speeds)
    synthetic_drums(args.synthetic_drums)
    lookalike_kits(args.lookalike_kits)
    typing_seconds(args.typing)
    if music_packages(args.music_packages):
        from trainer.music import TRAIN_HINT, installed

        if not installed("train", args.music_root):
            raise UsageError(f"--music-packages: no training music under {args.music_root}: {TRAIN_HINT}")


def _seconds(flag: str, seconds: float) -> float:
    """Seconds of added training audio for `flag`; a UsageError naming the flag when out of range."""
    if not 0 <= seconds <= 36000:
        raise UsageError(f"{flag} {seconds}: expected seconds in [0, 36000]")
    return float(seconds)


def synthetic_drums(seconds: float) -> float:
    return _seconds("--synthetic-drums", seconds)


def lookalike_kits(seconds: float) -> float:
    """`--lookalike-kits` (train, polish, enroll)."""
    return _seconds("--lookalike-kits", seconds)


def typing_seconds(seconds: float) -> float:
    """`--typing` (train, polish, enroll)."""
    return _seconds("--typing", seconds)


def music_packages(seconds: float) -> float:
    """`--music-packages` (train, polish)."""
    return _seconds("--music-packages", seconds)


def background_speeds(text: str) -> tuple[float, ...]:
    """The factors of `--background-speeds` ('none' or '': none); a UsageError naming the flag."""
    try:
        if str(text or "").strip().lower() in ("", "none"):
            return ()
        out = tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--background-speeds {text!r}: expected comma-separated factors such as 0.9,1.1") from None
    if any(not 0.5 <= f <= 2.0 for f in out):
        raise UsageError(f"--background-speeds {text!r}: factors must lie in [0.5, 2]")
    return out


def _check_paths(args) -> tuple[Path, Path]:
    out = args.out or ROOT / "runs" / time.strftime("train-%Y%m%d-%H%M%S")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out}: run folder exists and is not empty; choose another --out")
    export = args.export or out / "model.pt"
    if export.exists() and not args.overwrite:
        raise UsageError(f"{export}: model file exists; pass --overwrite to replace it")
    if export.exists() and export.is_dir():
        raise UsageError(f"{export}: is a folder, not a model file path")
    return out, export


def test_window_set(bank: "ClipBank", spec: "WindowSpec", n: int) -> WindowSet:
    """The held-out test windows `snap-train train` draws with its default seed: what polish and soup
    report a model's window-level figures on, so that files made by different commands compare."""
    from trainer.data import MixConfig

    return make_window_set(_held_out_sampler(bank, "test", spec, MixConfig()), n, TrainConfig().seed + 2)


def _held_out_sampler(bank: "ClipBank", split: str, spec: "WindowSpec", mix: "MixConfig") -> "WindowSampler":
    """The sampler of a held-out part; a tiny data set without one falls back to the training clips
    (with a warning: its figures then say little)."""
    from trainer.data import WindowSampler

    if bank.snaps[split] and bank.no_snaps[split]:
        return WindowSampler(bank, split, spec, mix)
    log.warning("no '%s' clips (the hash split put none there): %s windows are drawn from the training "
                "clips, so %s figures are optimistic; add more clips", split, split, split)
    return WindowSampler(bank, "train", spec, mix, background_split="train")


def run(args) -> int:
    import numpy as np
    import torch

    from trainer import report
    from trainer.data import MixConfig, WindowSampler, WindowSpec, mine_hard_negatives
    from trainer.export import build_metadata, export_model, load_trainable, window_spec_of
    from trainer.model import ModelConfig, SnapNet, count_parameters

    cfg = TrainConfig(seed=args.seed, max_epochs=args.epochs, patience=args.patience, batch_size=args.batch_size,
                      epoch_windows=args.epoch_windows, val_windows=args.val_windows,
                      test_windows=args.test_windows, lr=args.lr, spec_augment=not args.no_spec_augment,
                      threshold_beta=args.threshold_beta, threads=args.threads, progress=not args.no_progress)
    for name in ("max_epochs", "batch_size", "epoch_windows", "val_windows", "test_windows"):
        if getattr(cfg, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive")
    if not 0.0 <= args.polish_hard_positives < 1.0:
        raise UsageError("--polish-hard-positives must lie in [0, 1)")
    check_soup(args.polish_soup, "--polish-soup")
    check_background_arguments(args)
    out, export = _check_paths(args)
    torch.set_num_threads(max(1, cfg.threads))
    t_start = time.perf_counter()

    if args.init:
        net, base_meta = load_trainable(args.init)
        spec = window_spec_of(base_meta)
        print(f"starting from {args.init} ({base_meta.architecture})")
    else:
        overrides: dict[str, Any] = {}
        if args.n_mels:
            overrides["n_mels"] = args.n_mels
        if args.channels:
            try:
                overrides["channels"] = tuple(int(c) for c in args.channels.split(","))
            except ValueError:
                raise UsageError(f"--channels {args.channels!r}: expected integers such as 8,16,32,64") from None
        mcfg = ModelConfig(**overrides)
        net = SnapNet(mcfg)
        spec = WindowSpec(sample_rate=mcfg.sample_rate, window_samples=mcfg.window_samples)
    mix = MixConfig(augment=not args.no_augment)

    out.mkdir(parents=True, exist_ok=True)
    manifest, bank = prepare_data(args.data, spec, mix, progress=cfg.progress)
    manifest.to_csv(out / "manifest.csv", index=False)
    extended = extend_backgrounds(bank, args)
    t_loaded = time.perf_counter()
    summary = bank.summary()
    print(f"data: {summary['train']['snap']}/{summary['val']['snap']}/{summary['test']['snap']} snap, "
          f"{summary['train']['no_snap']}/{summary['val']['no_snap']}/{summary['test']['no_snap']} no_snap clips "
          f"(train/val/test), {summary['train']['background_seconds']} s training background, "
          f"{summary['skipped_files']} file(s) skipped")

    train_s = WindowSampler(bank, "train", spec, mix)
    fixed_mix = MixConfig(augment=not args.no_augment)
    val = make_window_set(_held_out_sampler(bank, "val", spec, fixed_mix), cfg.val_windows, cfg.seed + 1)
    test = make_window_set(_held_out_sampler(bank, "test", spec, fixed_mix), cfg.test_windows, cfg.seed + 2)

    result = fit(net, train_s, val, cfg, out)
    mining: list[dict] = []
    for r in range(args.mine_rounds):
        # hard negatives: every window of the training backgrounds and no_snap clips, scored as the
        # listener would score them; the ones the model gets wrong are trained against
        hard, info = mine_hard_negatives(lambda b: score_windows(result.net, b),
                                         [*bank.backgrounds["train"], *bank.no_snaps["train"]],
                                         spec.window_samples, cfg.hop_samples)
        # the same over the validation part, so early stopping and the threshold see such windows too
        val_hard, val_info = mine_hard_negatives(lambda b: score_windows(result.net, b),
                                                 [*bank.backgrounds["val"], *bank.no_snaps["val"]],
                                                 spec.window_samples, cfg.hop_samples, limit=max(1, cfg.val_windows // 3))
        mining.append({**info, "val": val_info})
        print(f"mining round {r + 1}: {info['above']} of {info['windows_scored']} training windows without a snap "
              f"score >= {info['min_score']}; training against {info['kept']} of them "
              f"(validation: {val_info['kept']} of {val_info['windows_scored']})")
        if not hard:
            break
        train_s.set_hard_negatives(train_s.hard + hard)  # keep earlier rounds' windows: not forgotten
        if val_hard:
            val = WindowSet(np.concatenate([val.x, np.stack(val_hard)]),
                            np.concatenate([val.y, np.zeros(len(val_hard), dtype=val.y.dtype)]),
                            val.kinds + ["hard"] * len(val_hard))
        cfg_r = replace(cfg, max_epochs=args.mine_epochs, lr=cfg.lr / 2, seed=cfg.seed + 100 * (r + 1))
        more = fit(result.net, train_s, val, cfg_r, out / f"mining-{r + 1}")
        offset = result.epochs_run
        for h in more.history:
            h["epoch"] += offset
        result = FitResult(net=more.net, history=result.history + more.history,
                           best_epoch=more.best_epoch + offset, epochs_run=offset + more.epochs_run,
                           seconds=result.seconds + more.seconds, checkpoint=more.checkpoint)
    val_scores = score_windows(result.net, val.x)
    threshold = report.calibrate_threshold(val_scores, val.y, beta=cfg.threshold_beta)
    polished = None
    if args.polish_steps > 0:
        # event-level hard negatives at the calibrated threshold, which the polish keeps
        from trainer.polish import det_spec_for, negative_audio, polish

        polished = polish(result.net, train_s, negative_audio(bank), det_spec_for(spec, cfg.hop_samples, threshold),
                          args.polish_steps, cfg.seed, progress=cfg.progress,
                          hard_positive_share=args.polish_hard_positives, soup=args.polish_soup)
        print(f"polish ({len(polished.get('soup', [polished]))} averaged): {polished['steps']} steps against the pipeline's false triggers on "
              f"{polished['negative_seconds']:.0f} s of training/validation negatives "
              f"({' -> '.join(str(r['false_triggers']) for r in polished['mining_rounds'])} per mining round)")
        val_scores = score_windows(result.net, val.x)
    val_metrics = report.binary_metrics(val_scores, val.y, threshold, val.kinds)
    test_scores = score_windows(result.net, test.x)
    test_metrics = report.binary_metrics(test_scores, test.y, threshold, test.kinds)
    t_trained = time.perf_counter()

    report.write_json({"test": test_metrics, "val": val_metrics}, out / "test_metrics.json")
    report.write_json(result.history, out / "history.json")
    if result.history:
        report.plot_history(result.history, out / "metrics_per_epoch.png")
    report.plot_confusion(test_metrics["confusion"], out / "confusion_matrix.png")
    report.plot_pr_threshold(val_scores, val.y, threshold, out / "precision_recall_threshold.png")
    report.plot_pr_threshold(test_scores, test.y, threshold, out / "precision_recall_threshold_test.png",
                             title="test windows")

    data_summary = {"folder": str(args.data), **summary,
                    "split": "trainer.splits.split_of (sha1 of file name): 70/15/15",
                    "windows": {"epoch": cfg.epoch_windows, "val": cfg.val_windows, "test": cfg.test_windows}}
    training = {"config": asdict(cfg), "mix": asdict(mix), **extended,
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run, "fit_seconds": round(result.seconds, 1),
                "total_seconds": round(t_trained - t_start, 1), "load_seconds": round(t_loaded - t_start, 1),
                "parameters": count_parameters(result.net), "init": str(args.init) if args.init else None,
                "mining": mining, "polish": polished}
    meta = build_metadata(result.net.cfg, spec, cfg.hop_samples, threshold, data=data_summary,
                          test_metrics={**test_metrics, "val": val_metrics}, extra={"training": training})
    try:
        path = export_model(result.net, meta, export, overwrite=args.overwrite)
    except FileExistsError as exc:
        raise UsageError(str(exc)) from None
    report.write_json({"training": training, "metadata": json.loads(meta.to_json())}, out / "run.json")
    size_kb = os.path.getsize(path) / 1024
    print(f"trained {result.epochs_run} epoch(s) (best {result.best_epoch}) in {result.seconds:.0f} s "
          f"(total {t_trained - t_start:.0f} s); threshold {threshold:.3f} (val F{cfg.threshold_beta:g})")
    print(f"test windows: accuracy {test_metrics['accuracy']:.4f} precision {test_metrics['precision']:.4f} "
          f"recall {test_metrics['recall']:.4f} F1 {test_metrics['f1']:.4f} AUROC {test_metrics['auroc']:.4f}")
    print(f"wrote {path} ({size_kb:.0f} KiB); report in {out}")
    return 0

