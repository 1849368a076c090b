"""`snap-train tune`: choose a model's follow threshold on validation scenes and write it into a copy.

    snap-train scenes --data ../shared/data --clips val --background-split val --out runs/val-scenes
    snap-train tune models/snap-default.pt --scenes runs/val-scenes --out runs/tuned.pt

The follow threshold (docs/detection.md) is the bar for a snap within the gesture gap of a sure one:
the second and third snaps of a double or triple. It cannot be calibrated on clips, only on
gestures, so it is chosen here on scenes: one pass of the model over them, then the listener's
pipeline replayed at the model's own threshold with each candidate follow threshold. The choice is
the highest candidate within 1 % of the most gestures counted exactly (a smaller gain is noise on a
few hundred gestures, and a lower bar lets speech join gestures), among those that add no false
gesture on the scenes' negatives and turn no false single into a false double or triple; none when
no candidate counts more gestures exactly than one threshold alone. The weights are not touched, nor
the threshold unless `--threshold` sets it (chosen elsewhere; the follow threshold is then chosen at it).

Only validation scenes are accepted (`snap-train scenes --clips val --background-split val`): a
setting chosen on the evaluation scenes would make `snap-train evaluate`'s figures on them no
longer held out.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.cli import UsageError

DEFAULT_CANDIDATES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class FollowPoint:
    """The pipeline on the tuning scenes at one follow threshold (None: one threshold)."""

    follow: float | None
    precision: float
    recall: float
    f1: float
    exact: float
    false_gestures: int
    false_snaps: int
    # false doubles and triples on the negatives: a lower bar can turn a false single into a false
    # double (a sound right after it joins), which a light bound to a double snap would see
    false_multi: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# exact-gesture shares this close to the best count as a tie (2-3 of the ~250 validation gestures):
# a lower bar lets more speech and clatter join a real gesture, which the validation negatives
# cannot show (a follow needs a sure snap before it), so a gain this small does not pay for it
EXACT_TIE = 0.01


def choose_follow(points: list[FollowPoint], tie: float = EXACT_TIE) -> FollowPoint:
    """The point to keep (pure): `points` holds the one-threshold point (follow None) and the
    candidates. A candidate must add no false gesture, turn no false single into a false double or
    triple, and count more gestures exactly than the one-threshold point; of those within `tie` of
    the most exact gestures, the higher (safer) bar."""
    off = next((p for p in points if p.follow is None), None)
    if off is None:
        raise ValueError("choose_follow needs the one-threshold point (follow None) among the points")
    ok = [p for p in points if p.follow is not None and p.false_gestures <= off.false_gestures
          and p.false_multi <= off.false_multi and p.exact > off.exact]
    if not ok:
        return off
    best = max(p.exact for p in ok)
    return max((p for p in ok if p.exact >= best - tie - 1e-12), key=lambda p: p.follow)


def choose_follow_guarded(points: list[FollowPoint], guard: list[FollowPoint], reference: float | None,
                          tie: float = EXACT_TIE) -> FollowPoint:
    """`choose_follow` on `points` among the candidates whose snap F1 on the `guard` scenes is within
    `tie` of the `reference` follow threshold's there, with no more false doubles and triples on
    the guard's negatives (pure). Enrollment: `points` on the user's scenes, `guard` on scenes of
    the shipped data's validation snaps, `reference` the base model's follow threshold (None: one
    threshold). F1, not exact counts: what a lower bar costs is precision (sounds next to a snap
    joining its gesture), and snap F1 on the shipped data is what an enrollment must not lose."""
    ref = next((g for g in guard if g.follow == reference), None)
    if ref is None:
        raise ValueError(f"choose_follow_guarded: no guard point at the reference follow threshold {reference}")
    ok = {g.follow for g in guard if g.f1 >= ref.f1 - tie - 1e-12 and g.false_multi <= ref.false_multi}
    return choose_follow([p for p in points if p.follow is None or p.follow in ok], tie)


def check_tuning_scenes(index: dict, where: Path) -> None:
    """Only validation scenes (validation clips over the validation part of the backgrounds): see
    the module's docstring."""
    clips, backgrounds = index.get("clip_split", "test"), index.get("background_split")
    if (clips, backgrounds) != ("val", "val"):
        raise UsageError(
            f"{where / 'scenes.json'}: clip_split {clips!r}, background_split {backgrounds!r}: not validation "
            "scenes; build them with `snap-train scenes --clips val --background-split val` (a setting "
            "chosen on the evaluation scenes would make `snap-train evaluate`'s figures no longer held out)")


def replay_point(run: Any, recs: list, threshold: float, follow: float | None) -> FollowPoint:
    """The pipeline replayed from one model pass (`trainer.evaluate.record_pass`) at `threshold` and
    follow threshold `follow` (None: one threshold), scored against the recordings' truth."""
    from trainer.evaluate import score

    res = score(recs, run.replay(threshold, threshold if follow is None else follow))
    s, g, n = res["snaps"], res["gestures"], res.get("negatives")
    return FollowPoint(follow, float(s["precision"]), float(s["recall"]), float(s["f1"]),
                       float(g["exact_count_share"]), int(n["false_gestures"]["events"]) if n else 0,
                       int(n["false_snaps"]["events"]) if n else 0,
                       int(n["false_gestures_by_count"]["2+"]["events"]) if n else 0)


def follow_points(model: Any, recs: list, candidates: list[float], audio: dict | None = None,
                  threshold: float | None = None) -> list[FollowPoint]:
    """One model pass over the recordings, the pipeline replayed at `threshold` (default the model's)
    for each candidate follow threshold below it, and once with none. `audio`: {index: samples at
    the recording's rate} when the recordings are not files (default: read from `recs`)."""
    from snap_mqtt.audio_io import read_audio
    from trainer.evaluate import record_pass

    threshold = float(model.metadata.threshold if threshold is None else threshold)
    if audio is None:
        audio = {i: read_audio(r.file).samples for i, r in enumerate(recs)}
    run = record_pass(model, recs, audio, threshold, 0.1, follow=threshold)
    return [replay_point(run, recs, threshold, f) for f in [None, *sorted({c for c in candidates if c < threshold})]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="model file to tune (it is not changed)")
    parser.add_argument("--scenes", type=Path, required=True,
                        help="validation scenes (`snap-train scenes --clips val --background-split val`)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the tuned copy")
    parser.add_argument("--overwrite", action="store_true", help="allow --out to replace an existing file")
    parser.add_argument("--candidates", default=",".join(str(c) for c in DEFAULT_CANDIDATES),
                        help="follow thresholds to try (default: %(default)s)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="also set the model's threshold (chosen elsewhere, e.g. against false gestures "
                             "over music): the follow threshold is then chosen at it (default: keep the model's)")


def parse_candidates(text: str) -> list[float]:
    try:
        vals = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--candidates {text!r}: expected comma-separated numbers") from None
    if not vals or any(not 0 < v < 1 for v in vals):
        raise UsageError(f"--candidates {text!r}: each must lie in (0, 1)")
    return vals


def run(args: argparse.Namespace) -> int:
    import hashlib

    import torch

    from snap_mqtt.model_file import load_model, save_model
    from trainer.evaluate import recordings_of
    from trainer.scenes import load_index

    torch.set_num_threads(1)
    candidates = parse_candidates(args.candidates)
    if args.out.exists() and not args.overwrite:
        raise UsageError(f"{args.out}: exists; pass --overwrite to replace it (or choose another path)")
    if args.out.exists() and args.out.resolve() == args.model.resolve():
        raise UsageError(f"{args.out}: is the model being tuned; write the copy to another file")
    index = load_index(args.scenes)
    check_tuning_scenes(index, args.scenes)
    recs = recordings_of(index, args.scenes)
    if not any(r.role == "scene" for r in recs):
        raise UsageError(f"{args.scenes}: the scenes index lists no scene")
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise UsageError(f"--threshold {args.threshold}: expected a value in (0, 1)")
    model = load_model(args.model)
    threshold_before, follow_before = model.metadata.threshold, model.metadata.follow_threshold
    if args.threshold is not None:
        model = dataclasses.replace(model, metadata=dataclasses.replace(
            model.metadata, threshold=float(args.threshold), follow_threshold=None))
    t0 = time.monotonic()
    points = follow_points(model, recs, candidates)
    best = choose_follow(points)
    meta = model.metadata
    print(f"{args.model.name} on {args.scenes} at its threshold {meta.threshold:.3f}:")
    print(f"{'follow':>7} {'P':>6} {'R':>6} {'F1':>6} {'exact':>6} {'false gestures':>15} {'of them 2+':>10}")
    for p in points:
        mark = "  <- kept" if p is best else ""
        label = "off" if p.follow is None else f"{p.follow:.2f}"
        print(f"{label:>7} {p.precision:6.3f} {p.recall:6.3f} {p.f1:6.3f} {p.exact:6.3f} {p.false_gestures:15d}"
              f"{p.false_multi:11d}{mark}")
    extra = dict(meta.extra)
    extra["tune"] = {"scenes": str(args.scenes),
                     "scenes_index": {k: index.get(k) for k in ("seed", "data", "clip_split", "background_split")}
                     | {"scenes": len(index["scenes"]), "snaps": sum(len(s["snaps"]) for s in index["scenes"]),
                        "negative_seconds": sum(n["seconds"] for n in index["negatives"])},
                     "base_sha256": hashlib.sha256(args.model.read_bytes()).hexdigest(),
                     "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "follow_before": follow_before,
                     "threshold_before": threshold_before,
                     "points": [p.as_dict() for p in points]}
    new_meta = dataclasses.replace(meta, follow_threshold=best.follow, extra=extra)
    path = save_model(model.module, new_meta, args.out)
    kept = "none (one threshold)" if best.follow is None else f"{best.follow:.2f}"
    print(f"follow threshold: {kept}; wrote {path} in {time.monotonic() - t0:.0f} s")
    return 0
