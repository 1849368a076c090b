"""How much do the event figures depend on where the window grid falls? The same model and scenes,
the pipeline's windows started at several phases (samples into the first hop).

    .venv/bin/python benchmarks/grid_phase.py --scenes runs/eval/scenes-s0 --phases 0,80,160,240

The listener's windows start every hop (20 ms) at a phase the pipeline picks for latency (window
ends where capture blocks end, `SnapPipeline._align`); the audio does not know the grid, so any
phase is as likely a priori. A figure that moves between phases is that much less certain than
its counting noise alone says. Prints, per phase, snap precision, recall, F1, exact gestures,
false snaps and gestures per hour, then the mean and range over phases.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="model file (default: the shipped model)")
    ap.add_argument("--scenes", type=Path, required=True, help="folder built by `snap-train scenes`")
    ap.add_argument("--phases", default="0,80,160,240", help="window phases, model samples")
    ap.add_argument("--threshold", type=float, default=None, help="(default: the model's)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from snap_mqtt.audio_io import read_audio
    from snap_mqtt.model_file import default_model_path, load_model
    from trainer.evaluate import load_recordings, record_pass, score

    model = load_model(args.model or default_model_path())
    thr = args.threshold if args.threshold is not None else model.metadata.threshold
    recs = load_recordings(args.scenes)
    audio = {i: read_audio(r.file).samples for i, r in enumerate(recs)}
    print(f"{model.path.name} on {args.scenes}, threshold {thr:.3f}")
    print(f"{'phase':>5} {'P':>6} {'R':>6} {'F1':>6} {'exact':>6} {'FS/h':>7} {'FG/h':>7} {'FG':>4}")
    rows = []
    for ph in (int(v) for v in args.phases.split(",")):
        res = score(recs, record_pass(model, recs, audio, thr, 0.1, phase=ph).detections)
        s, g, n = res["snaps"], res["gestures"], res["negatives"]
        row = (s["precision"], s["recall"], s["f1"], g["exact_count_share"], n["false_snaps"]["per_hour"],
               n["false_gestures"]["per_hour"], n["false_gestures"]["events"])
        rows.append(row)
        print(f"{ph:5d} " + " ".join(f"{v:6.3f}" for v in row[:4]) + f" {row[4]:7.1f} {row[5]:7.1f} {row[6]:4d}",
              flush=True)
    a = np.array(rows, dtype=float)
    for name, f in (("mean", np.mean), ("min", np.min), ("max", np.max)):
        v = f(a, axis=0)
        print(f"{name:>5} " + " ".join(f"{x:6.3f}" for x in v[:4]) + f" {v[4]:7.1f} {v[5]:7.1f} {v[6]:4.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
