"""Enrollment benchmark: the default model against a simulated new hand, mic and room, before and
after `snap-train enroll` on 50 of that person's snaps and about a minute of that room.

    .venv/bin/python benchmarks/enrollment.py --data ../shared/data --work runs/bench-enroll --seeds 1,2

For each seed: `trainer.simroom` builds the person (enrollment folder + evaluation scenes and
negatives from the same simulated room); the base model and the enrolled model are run through the
listener's SnapPipeline on those scenes (`trainer.evaluate`), and on the shipped data's own test
scenes (`snap-train scenes`, built once), to check the enrolled model forgot nothing; with
`--lookalikes DIR` (`snap-train lookalikes`) also on recorded claps, knocks and clicks and a real
other hand's snaps. Enrollment wall time is measured with one torch thread. Prints a table and writes <work>/enrollment.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def figures(model_path: Path, scenes: Path, threshold: float | None = None) -> dict:
    from snap_mqtt.audio_io import read_audio
    from snap_mqtt.model_file import load_model
    from trainer.evaluate import evaluate_model, load_recordings

    model = load_model(model_path)
    recs = load_recordings(scenes)
    audio = {i: read_audio(r.file).samples for i, r in enumerate(recs)}
    thr = float(threshold if threshold is not None else model.metadata.threshold)
    res = evaluate_model(model, recs, audio, [], thr, 0.1)
    s, g, n = res["snaps"], res["gestures"], res.get("negatives", {})
    out = {"threshold": thr, "precision": s["precision"], "recall": s["recall"], "f1": s["f1"],
           "exact_gestures": g["exact_count_share"], "true_gestures": g["true_gestures"],
           "false_snaps_per_hour": n.get("false_snaps", {}).get("per_hour"),
           "false_gestures_per_hour": n.get("false_gestures", {}).get("per_hour"),
           "false_gestures_upper95": n.get("false_gestures", {}).get("upper95_per_hour"),
           # doubles and triples: what a light bound to a double snap would see
           "false_multi_gestures_per_hour": n.get("false_gestures_by_count", {}).get("2+", {}).get("per_hour"),
           "negative_hours": n.get("hours"),
           "by_kind_false_gestures": {k: v["negatives"]["false_gestures"]["events"]
                                      for k, v in res["by_kind"].items() if "negatives" in v}}
    return out


def tune_overrides(items: list[str], cls: type) -> dict:
    """`FIELD=VALUE` strings to TuneConfig keyword arguments, typed like the field's default."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out: dict = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in fields:
            raise SystemExit(f"--set {item}: expected FIELD=VALUE with FIELD one of {', '.join(fields)}")
        kind = type(fields[name].default)
        if kind is bool:  # bool("false") is True
            if value.lower() not in ("true", "false", "1", "0"):
                raise SystemExit(f"--set {item}: expected true or false")
            out[name] = value.lower() in ("true", "1")
        else:
            out[name] = kind(value)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-enroll")
    ap.add_argument("--base", type=Path, default=None, help="base model (default: the shipped default)")
    ap.add_argument("--seeds", default="1", help="simulated persons, comma-separated seeds")
    ap.add_argument("--snaps", type=int, default=50)
    ap.add_argument("--room-seconds", type=float, default=60.0)
    ap.add_argument("--shipped-scenes", type=Path, default=None,
                    help="scenes built by `snap-train scenes` from the shipped data (default: build into WORK)")
    ap.add_argument("--lookalikes", type=Path, default=None,
                    help="also evaluate on a `snap-train lookalikes` folder (recorded claps, another hand)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a fine-tuning setting (trainer.finetune.TuneConfig), e.g. --set p_hard=0.2")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from snap_mqtt.model_file import default_model_path
    from trainer import enroll as en
    from trainer import finetune as ft
    from trainer import scenes as sc
    from trainer import simroom as sr

    base = args.base or default_model_path()
    overrides = tune_overrides(args.set, ft.TuneConfig)
    args.work.mkdir(parents=True, exist_ok=True)
    shipped = args.shipped_scenes or args.work / "shipped-scenes"
    if not (shipped / sc.INDEX_NAME).exists():
        sc.build(args.data, shipped, seed=0)
    results = {"base": str(base), "tune": {**dataclasses.asdict(ft.TuneConfig()), **overrides}, "persons": {}}
    results["shipped_base"] = figures(base, shipped)
    if args.lookalikes:
        results["lookalikes_base"] = figures(base, args.lookalikes)
    for seed in (int(s) for s in args.seeds.split(",")):
        d = args.work / f"person-{seed}"
        if not (d / "person.json").exists():
            sr.build_simroom(args.data, d, seed=seed, n_snaps=args.snaps, room_seconds=args.room_seconds)
        out = args.work / f"enrolled-{seed}.pt"
        cfg = ft.TuneConfig(**{"seed": 0, **({"steps": args.steps} if args.steps else {}), **overrides})
        t0 = time.monotonic()
        r = en.enroll(d / "enroll", out, base, args.data, cfg, overwrite=True, progress=False)
        wall = time.monotonic() - t0
        print(en.format_table(r))
        results["persons"][seed] = {
            "person": json.loads((d / "person.json").read_text())["person"],
            "enroll_seconds": round(wall, 1), "threshold": r.threshold,
            "heldout_before": r.before, "heldout_after": r.after,
            "room_before": figures(base, d / "eval"), "room_after": figures(out, d / "eval"),
            "shipped_after": figures(out, shipped),
            # the same model at the base model's threshold: forgetting, apart from the threshold move
            "shipped_after_base_threshold": figures(out, shipped, float(r.enrollment["base_threshold"])),
        }
        if args.lookalikes:
            results["persons"][seed]["lookalikes_after"] = figures(out, args.lookalikes)
    (args.work / "enrollment.json").write_text(json.dumps(results, indent=1, default=float))

    def row(name: str, f: dict) -> str:
        return (f"{name:<34} {f['threshold']:>5.2f} {f['precision']:>6.3f} {f['recall']:>6.3f} {f['f1']:>6.3f} "
                f"{f['exact_gestures']:>6.3f} {f['false_gestures_per_hour'] or 0:>7.1f} "
                f"{f['false_gestures_upper95'] or 0:>7.1f} {f['false_snaps_per_hour'] or 0:>7.1f} "
                f"{f['false_multi_gestures_per_hour'] or 0:>7.1f}")

    print(f"\n{'':<34} {'thr':>5} {'prec':>6} {'recall':>6} {'F1':>6} {'exactG':>6} {'falseG/h':>7} "
          f"{'(95%<)':>7} {'falseS/h':>7} {'FG2+/h':>7}")
    print(row("shipped test scenes, base", results["shipped_base"]))
    for seed, p in results["persons"].items():
        print(row(f"person {seed} room, base", p["room_before"]))
        print(row(f"person {seed} room, enrolled", p["room_after"]))
        print(row(f"shipped test scenes, enrolled {seed}", p["shipped_after"]))
        print(row("  same, at the base threshold", p["shipped_after_base_threshold"]))
        print(f"  enrollment wall time {p['enroll_seconds']} s (1 torch thread); "
              f"negatives {p['room_after']['negative_hours']:.3f} h, false gestures by kind "
              f"{p['room_after']['by_kind_false_gestures']}")
    if args.lookalikes:
        print("\nrecorded look-alikes (false gestures by kind) and the other hand's snaps (recall):")
        looks = [("base", results["lookalikes_base"])] + [
            (f"enrolled {seed}", p["lookalikes_after"]) for seed, p in results["persons"].items()]
        for name, f in looks:
            print(f"  {name:<12} {f['by_kind_false_gestures']}  other hand: recall {f['recall']:.3f}")
    print(f"\nwritten: {args.work / 'enrollment.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
