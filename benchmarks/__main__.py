"""One command for the figures: CPU per audio second (ours vs the seed's model at the same hop),
live latency onset -> MQTT message through PulseAudio + sounddevice + Mosquitto, the listener's
peak RSS, and the default model's training time.

    .venv/bin/python -m benchmarks [--scenes runs/eval/scenes-s0] [--seed-model FILE] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _training_time(meta) -> dict:
    tr = (meta.extra or {}).get("training", {})
    return {k: tr[k] for k in ("total_seconds", "fit_seconds", "load_seconds", "epochs_run", "best_epoch") if k in tr}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from snap_mqtt.model_file import default_model_path

    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=default_model_path())
    ap.add_argument("--seed-model", type=Path, default=ROOT / "benchmarks" / "seed-baseline.pt",
                    help="the seed baseline (python -m trainer.baselines train-seed); skipped if absent")
    ap.add_argument("--scenes", type=Path, default=None,
                    help="play 16 kHz scenes from this folder for the latency run (default: the demo recording x3)")
    ap.add_argument("--latency-scenes", type=int, default=3, help="how many scenes to play (30 s each)")
    ap.add_argument("--cpu-seconds", type=float, default=60.0, help="audio seconds for the CPU figure (all rounds)")
    ap.add_argument("--cpu-rounds", type=int, default=5, help="interleaved rounds of the CPU comparison")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="JSON results (default runs/benchmarks/bench-<time>.json)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from benchmarks.cpu import run_cpu
    from benchmarks.latency import demo_truth, run_latency, scenes_truth
    from snap_mqtt.model_file import load_model

    torch.set_num_threads(1)
    model = load_model(args.model)
    truth = scenes_truth(args.scenes, args.latency_scenes) if args.scenes else demo_truth(3)
    res: dict = {"model": str(args.model), "cpu_count": os.cpu_count(), "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                 "training_time": _training_time(model.metadata)}
    reps = int(np.ceil(args.cpu_seconds * truth.rate / len(truth.audio)))
    audio = np.tile(truth.audio, reps)
    res["cpu"] = run_cpu(args.model, args.seed_model if args.seed_model.exists() else None, audio, truth.rate, args.cpu_seconds,
                         args.cpu_rounds)
    if not args.skip_latency:
        log = ROOT / "runs" / "benchmarks" / "listener.log"
        res["live"] = run_latency(args.model, truth, log)
    out = args.out or ROOT / "runs" / "benchmarks" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))

    c = res["cpu"]
    print(f"model {args.model.name}; {os.cpu_count()} CPUs; load average "
          f"{c['ours']['loadavg_1min'][0]:.1f}-{c['ours']['loadavg_1min'][1]:.1f} during the CPU run")
    print(f"CPU, detection path, 1 torch thread: ours {c['ours']['cpu_seconds_per_audio_second']:.4f} s per audio s "
          f"({c['ours']['windows_per_second']:.0f} windows/s)")
    print(f"  without the onset gate {c['ours_no_gate']['cpu_seconds_per_audio_second']:.4f}; gated, "
          f"with 0.05 s capture blocks {c['ours_block_0.05']['cpu_seconds_per_audio_second']:.4f}, "
          f"with 0.1 s blocks {c['ours_block_0.1']['cpu_seconds_per_audio_second']:.4f}")
    if "seed_same_hop" in c:
        fmt = lambda r: f"{r['median']:.1f}x (rounds {r['min']:.1f}-{r['max']:.1f})"  # noqa: E731
        print(f"  seed model at the same hop: {c['seed_same_hop']['cpu_seconds_per_audio_second']:.3f} s per audio s, "
              f"{fmt(c['seed_same_hop_over_ours'])} ours with 0.02 s blocks; "
              f"{c['seed_same_hop_block_0.1']['cpu_seconds_per_audio_second']:.3f}, "
              f"{fmt(c['seed_same_hop_block_0.1_over_ours_block_0.1'])} with 0.1 s blocks; at its own 2 s blocks: "
              f"{c['seed_own_2s_blocks']['cpu_seconds_per_audio_second']:.4f}")
        print(f"  both without the onset gate at the same hop: seed "
              f"{c['seed_same_hop_no_gate']['cpu_seconds_per_audio_second']:.3f}, "
              f"{fmt(c['seed_same_hop_no_gate_over_ours_no_gate'])} ours ungated, "
              f"{fmt(c['seed_same_hop_no_gate_over_ours'])} the listener's gated path")
        print(f"  ({c['rounds']} interleaved rounds, each every configuration on the next "
              f"{c['audio_seconds_per_round']:.0f} s of audio; ratios: median of the rounds')")
    if "live" in res:
        lv = res["live"]
        s, g, g3 = lv["snap_latency"], lv["gesture_latency_from_last_snap"], lv["triple_latency_from_last_snap"]
        print(f"live ({lv['audio_seconds']:.0f} s played, load {lv['loadavg_1min'][0]:.1f}-{lv['loadavg_1min'][1]:.1f}): "
              f"{lv['matched_snaps']}/{lv['true_snaps']} snaps heard, {lv['snap_messages']} snap messages")
        if s["n"]:
            print(f"  onset -> snap message: p50 {s['p50_ms']:.0f} ms, p95 {s['p95_ms']:.0f} ms (max {s['max_ms']:.0f})")
        if g["n"]:
            print(f"  last snap onset -> gesture message: p50 {g['p50_ms']:.0f} ms, p95 {g['p95_ms']:.0f} ms "
                  f"(includes the 0.6 s gap; triples close at once: p50 {g3.get('p50_ms', float('nan')):.0f} ms); "
                  f"{lv['gestures_with_right_count']}/{lv['true_gestures']} gestures with the right count")
        print(f"  listener peak RSS {lv['listener_peak_rss_mb']:.0f} MB; listener CPU "
              f"{lv['listener_cpu_seconds_per_audio_second']:.3f} s per audio s")
    if res["training_time"]:
        print(f"default model training time: {res['training_time']}")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
