"""Which snaps does the detector miss, and how close did they come?

    .venv/bin/python benchmarks/missed.py --scenes runs/eval/scenes-s0 [--model FILE]

Runs the listener's pipeline over each scene twice (busy guard off): at the model's thresholds, and
with every bar at `--low` (0.02) to see what the model made of the snaps the first run missed. For
each missed snap prints its background, its gesture's count, its place in the gesture (0 = first),
its local SNR, its peak level (dBFS as mixed; "-": a scenes index written before it was recorded),
the best confidence within 150 ms at the low bar ("-": not placed at all), the model's best score
over the windows that hold its true onset in their positive region (what the detector could reach
with perfect placement and no refractory), and its scene and time. The summary says whether a
lower bar for some snaps could win them back (a gesture's first snap must reach the full threshold,
later ones only the follow threshold) and how many of the missed snaps are quiet.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOLERANCE_S = 0.15


class Miss(NamedTuple):
    kind: str  # the scene's background
    count: int  # its gesture's count
    place: int  # its place in the gesture (0 = first)
    snr_db: float
    peak_dbfs: float | None
    best: float | None  # best confidence within the tolerance at the low bar; None: not placed
    peak_score: float  # the model's best score over the windows holding its onset in their positive region
    scene: str
    time: float


def snaps_of(model, spec, x, rate: int, threshold: float, follow: float,
             tap: list | None = None) -> list[tuple[float, float]]:
    """(onset, confidence) of every snap the listener's pipeline reports, busy guard off; `tap` (a
    list) receives the model-rate audio the pipeline's resampler made."""
    from trainer.evaluate import run_pipeline

    d = run_pipeline(model, spec, threshold, x, rate, follow=follow, busy=0.0, tap=tap)
    return list(zip(d.snaps, d.confidences))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=Path, required=True, help="a folder built by `snap-train scenes`")
    ap.add_argument("--model", type=Path, default=None, help="model file (default: the shipped model)")
    ap.add_argument("--low", type=float, default=0.02, help="the bar of the second run (default: %(default)s)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from snap_mqtt.audio_io import read_audio
    from snap_mqtt.detector import WindowSpec
    from snap_mqtt.model_file import default_model_path, load_model
    from trainer.calibration import positive_peak
    from trainer.evaluate import RecordingScorer
    from trainer.finetune import scores_of
    from trainer.scenes import load_index

    model = load_model(args.model or default_model_path())
    md = model.metadata
    spec = WindowSpec.from_metadata(md)
    thr, fol = md.threshold, md.follow_threshold or md.threshold
    index = load_index(args.scenes)
    missed = []
    total = 0
    for scene in index["scenes"]:
        a = read_audio(args.scenes / scene["file"])
        model_audio: list = []  # what the listener's resampler made of the scene
        heard = snaps_of(model, spec, a.samples, a.sample_rate, thr, fol, tap=model_audio)
        low = snaps_of(model, spec, a.samples, a.sample_rate, args.low, args.low)
        truth = {round(s["time"], 6): s for s in scene["snaps"]}
        all_scores = None
        for g in scene["gestures"]:
            for place, t in enumerate(g["snaps"]):
                total += 1
                if any(abs(h - t) <= TOLERANCE_S for h, _ in heard):
                    continue
                best = max((c for h, c in low if abs(h - t) <= TOLERANCE_S), default=None)
                if all_scores is None:  # every window of the model-rate audio, on the grid from its start
                    all_scores = scores_of(RecordingScorer(model), model_audio[0], spec.window_samples,
                                           spec.hop_samples)
                peak = positive_peak(all_scores, int(round(t * md.sample_rate)), spec.window_samples,
                                     spec.hop_samples, spec.onset_min_samples, spec.onset_max_samples)
                snap = truth[round(t, 6)]
                missed.append(Miss(scene["kind"], g["count"], place, snap["snr_db"], snap.get("peak_dbfs"), best, peak,
                                   Path(scene["file"]).name, t))
    print(f"{'background':<12}{'count':>6}{'place':>6}{'SNR dB':>8}{'dBFS':>7}{'best':>7}{'peak':>7}  scene @ s")
    for m in missed:
        print(f"{m.kind:<12}{m.count:>6}{m.place:>6}{m.snr_db:>8.1f}"
              f"{'-' if m.peak_dbfs is None else format(m.peak_dbfs, '.1f'):>7}"
              f"{'-' if m.best is None else format(m.best, '.3f'):>7}{m.peak_score:>7.3f}  {m.scene} @ {m.time:.2f}")
    first = [m for m in missed if m.place == 0]
    multi_first = [m for m in first if m.count > 1]
    near = [m for m in multi_first if m.best is not None and m.best >= fol]
    print(f"\n{len(missed)} of {total} snaps missed (threshold {thr:.3f}, follow {fol:.2f}, busy guard off); "
          f"{len(first)} are a gesture's first snap, {sum(m.best is None or m.best < 0.3 for m in first)} of those "
          f"scored under 0.3 or were not placed; of the {len(multi_first)} missed first snaps of doubles and "
          f"triples, {len(near)} reached the follow threshold")
    if any(m.peak_dbfs is not None for m in missed):
        quiet = sum(m.peak_dbfs is not None and m.peak_dbfs <= -20 for m in missed)
        print(f"{quiet} of the {len(missed)} missed snaps peak 20 dB or more below full scale")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
