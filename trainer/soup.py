"""`snap-train soup A B [...] --out FILE`: average the weights of fine-tunes of one model.

Two polishes of the same base that learned different things (one against recorded claps, one also
against real music) sit in one basin of the loss; the average of their weights often keeps most
of what each learned and loses less than either (a "model soup", as `snap-train polish --soup`
does with seeds). The files must share the architecture and window (checked, by name); the
threshold, follow threshold and the rest of the metadata come from the first file, the sources
and weights are recorded in `extra.soup`. The first file's window-level test figures would describe
another set of weights: with `--data` they are measured again on the held-out test windows (the
same windows `train` and `polish` report), without it they are left empty. Choose the follow
threshold afterwards with `snap-train tune`, and evaluate before using it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from pathlib import Path


def soup(paths: list[Path], weights: list[float] | None = None):
    """(net, metadata) of the weighted mean of the models in `paths` (weights normalised; default equal)."""
    from trainer.cli import UsageError
    from trainer.export import load_trainable
    from trainer.polish import average_states

    if len(paths) < 2:
        raise UsageError("soup: give at least two model files")
    weights = [1.0] * len(paths) if weights is None else [float(w) for w in weights]
    if len(weights) != len(paths) or any(not w > 0 for w in weights):
        raise UsageError(f"--weights: one positive weight per model file ({len(paths)}), got {weights}")
    total = sum(weights)
    nets = [load_trainable(p) for p in paths]
    net0, meta0 = nets[0]
    keys = ("sample_rate", "window_samples", "onset_min_samples", "onset_max_samples", "architecture")
    states = []
    for p, (net, meta) in zip(paths, nets):
        for k in keys:
            if getattr(meta, k) != getattr(meta0, k):
                raise UsageError(f"{p}: {k} {getattr(meta, k)!r} differs from {paths[0]}'s {getattr(meta0, k)!r}")
        if meta.extra.get("model_config") != meta0.extra.get("model_config"):
            raise UsageError(f"{p}: model_config differs from {paths[0]}'s: not one architecture")
        states.append(net.state_dict())
    net0.load_state_dict(average_states(states, [w / total for w in weights]))
    net0.eval()
    record = [{"file": str(p), "sha256": hashlib.sha256(Path(p).read_bytes()).hexdigest(), "weight": w / total}
              for p, w in zip(paths, weights)]
    # the first file's test figures are not this model's: measured again by `run` with --data
    meta = dataclasses.replace(meta0, test_metrics={}, extra={**meta0.extra, "soup": record})
    return net0, meta


def test_metrics_of(net, meta, data: Path, n_windows: int) -> dict:
    """Window-level figures on the held-out test windows at the model's threshold (as polish reports)."""
    from trainer.data import MixConfig
    from trainer.export import window_spec_of
    from trainer.train import evaluate_windows, prepare_data, test_window_set

    spec = window_spec_of(meta)
    _, bank = prepare_data(data, spec, MixConfig(), progress=False)
    return evaluate_windows(net, test_window_set(bank, spec, n_windows), meta.threshold)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", type=Path, nargs="+", help="model files: fine-tunes of one base model")
    parser.add_argument("--out", type=Path, required=True, help="the averaged model file (never overwritten)")
    parser.add_argument("--weights", default=None, help="comma list, one weight per model (default: equal)")
    parser.add_argument("--data", type=Path, default=None,
                        help="the data folder: measure the soup's window-level test figures (default: leave them empty)")
    parser.add_argument("--test-windows", type=int, default=4000, help="(with --data; default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from trainer.cli import UsageError
    from trainer.export import export_model

    if args.out.exists():
        raise UsageError(f"{args.out}: exists; nothing is overwritten, choose another --out")
    try:
        weights = [float(w) for w in args.weights.split(",")] if args.weights else None
    except ValueError:
        raise UsageError(f"--weights {args.weights!r}: expected numbers such as 1,1") from None
    if args.data is not None and not args.data.is_dir():
        raise UsageError(f"--data {args.data}: no such folder")
    net, meta = soup(list(args.models), weights)
    if args.data is not None:
        m = test_metrics_of(net, meta, args.data, args.test_windows)
        meta = dataclasses.replace(meta, test_metrics=m)
        print(f"test windows: precision {m['precision']:.4f} recall {m['recall']:.4f} F1 {m['f1']:.4f} "
              f"AUROC {m['auroc']:.4f} at threshold {meta.threshold:.3f}")
    export_model(net, meta, args.out)
    for r in meta.extra["soup"]:
        print(f"  {r['weight']:.3f} x {r['file']} ({r['sha256'][:8]})")
    print(f"wrote {args.out}; choose its follow threshold with `snap-train tune {args.out} --scenes VAL --out FILE`")
    return 0
