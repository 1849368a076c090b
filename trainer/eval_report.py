"""How `snap-train evaluate` writes what it measured: the plain-text report, the Markdown tables for
the docs and the model card, and the threshold sweep as a PNG (pure formatting of the result dict)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def _f(x: Any, fmt: str = ".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, fmt)


def _by_count(neg: dict) -> str:
    """'single 3 (12.0/h), double 1 (4.0/h), triple 0 (0.0/h); double or triple 1 (4.0/h, 95 % ub 18.9)'"""
    bc = neg["false_gestures_by_count"]
    names = {"1": "single", "2": "double", "3": "triple"}
    parts = [f"{names.get(k, k)} {v['events']} ({v['per_hour']:.1f}/h)" for k, v in bc.items() if k != "2+"]
    m = bc["2+"]
    return (", ".join(parts) + f"; double or triple {m['events']} ({m['per_hour']:.1f}/h, "
            f"95 % ub {m['upper95_per_hour']:.1f})")


def format_report(result: dict) -> str:
    lines = []
    ds = result["dataset"]
    lines.append(f"scenes: {ds['scenes']} ({ds['scene_hours']:.3f} h, {ds['snaps']} snaps, {ds['gestures']} gestures); "
                 f"negatives: {ds['negative_hours']:.3f} h")
    hdr = (f"{'detector':<22}{'P':>7}{'R':>7}{'F1':>7}{'onset ms':>10}{'exact cnt':>11}"
           f"{'FS/h':>9}{'(95%ub)':>9}{'FG/h':>9}{'(95%ub)':>9}")
    lines += ["", hdr, "-" * len(hdr)]
    for name, res in result["detectors"].items():
        s, g, n = res["snaps"], res["gestures"], res.get("negatives")
        lines.append(
            f"{name:<22}{_f(s['precision']):>7}{_f(s['recall']):>7}{_f(s['f1']):>7}"
            f"{_f(s['median_abs_onset_error_ms'], '.1f'):>10}{_f(g['exact_count_share']):>11}"
            f"{_f(n['false_snaps']['per_hour'] if n else None, '.1f'):>9}{_f(n['false_snaps']['upper95_per_hour'] if n else None, '.1f'):>9}"
            f"{_f(n['false_gestures']['per_hour'] if n else None, '.1f'):>9}{_f(n['false_gestures']['upper95_per_hour'] if n else None, '.1f'):>9}")
    ours = result["detectors"].get("ours")
    if ours:
        lines += ["", f"ours by kind of background (threshold {ours['threshold']:.2f}):",
                  f"{'kind':<12}{'snaps':>6}{'R':>7}{'P':>7}{'exact':>7}{'neg h':>8}{'FS/h':>9}{'FG/h':>9}{'FG/h ub':>9}"
                  f"{'FG2+/h':>9}"]
        for kind, r in ours["by_kind"].items():
            s, g, n = r.get("snaps"), r.get("gestures"), r.get("negatives")
            lines.append(f"{kind:<12}{(s['tp'] + s['fn']) if s else 0:>6}{_f(s['recall'] if s else None):>7}"
                         f"{_f(s['precision'] if s else None):>7}{_f(g['exact_count_share'] if g else None):>7}"
                         f"{_f(n['hours'] if n else None):>8}{_f(n['false_snaps']['per_hour'] if n else None, '.1f'):>9}"
                         f"{_f(n['false_gestures']['per_hour'] if n else None, '.1f'):>9}"
                         f"{_f(n['false_gestures']['upper95_per_hour'] if n else None, '.1f'):>9}"
                         f"{_f(n['false_gestures_by_count']['2+']['per_hour'] if n else None, '.1f'):>9}")
        if ours.get("negatives"):
            lines.append("false gestures by count reported: " + _by_count(ours["negatives"]))
        lines.append("scenes by sample rate: " + ", ".join(
            f"{rate} Hz R {_f(r['snaps']['recall'])} P {_f(r['snaps']['precision'])}" for rate, r in ours["scenes_by_rate"].items()))
        lines.append("recall by local SNR (dB): " + ", ".join(
            f"{b} {_f(v['recall'])} (n={v['snaps']})" for b, v in ours["recall_by_snr_db"].items()))
        if "recall_by_peak_below_fs_db" in ours:
            lines.append("recall by snap peak (dB below full scale): " + ", ".join(
                f"{b} {_f(v['recall'])} (n={v['snaps']})" for b, v in ours["recall_by_peak_below_fs_db"].items()))
        lines.append(f"gesture counts (true -> reported): {json.dumps(ours['gestures']['confusion'])}")
        if "decision_delay_ms" in ours:
            lines.append(f"decision delay, onset -> event in audio time: p50 {ours['decision_delay_ms']['p50']:.0f} ms, "
                         f"p95 {ours['decision_delay_ms']['p95']:.0f} ms")
        lines.append(f"CPU: {ours['cpu_seconds_per_audio_second']:.4f} s per audio second (pipeline, "
                     f"model {ours['model_cpu_seconds_per_audio_second']:.4f})")
        lines.append("sweep (threshold: R / P / FG/h): " + "  ".join(
            f"{p['threshold']:.2f}: {p['recall']:.3f}/{p['precision']:.3f}/{p['false_gestures_per_hour']:.1f}" for p in ours["sweep"]))
    seed = result["detectors"].get("seed (2 s blocks)")
    if seed:
        b = seed["blocks"]
        lines += ["", f"seed, block level (2 s blocks, confidence >= {b['threshold']}): accuracy {_f(b['accuracy'])}, "
                      f"precision {_f(b['precision'])}, recall {_f(b['recall'])}; {b['blocks_with_several_snaps']} blocks "
                      f"hold 2-3 snaps it cannot count; snaps inside a positive block {_f(b['share_of_snaps_in_a_positive_block'])}"]
    if result.get("targets"):
        lines += ["", "targets: " + ", ".join(f"{k} {'met' if v['met'] else 'MISSED'} ({_f(v['value'])} vs {v['target']})"
                                               for k, v in result["targets"].items())]
    return "\n".join(lines)


def markdown_summary(result: dict) -> str:
    """The headline figures as Markdown tables (for docs/evaluation.md and the model card)."""
    ds = result["dataset"]
    out = [f"Scenes: {ds['scenes']} x 30 s ({ds['scene_hours']:.2f} h; {ds['snaps']} snaps in {ds['gestures']} gestures), "
           f"negatives: {ds['negative_hours']:.3f} h ({', '.join(ds['negative_kinds'])}). "
           f"Model `{Path(result['model']['path']).name}` at threshold {result['model']['threshold']:.2f}.", "",
           "| detector | snap P | snap R | snap F1 | median onset error | exact gesture count | false snaps/h (95 % ub) | false gestures/h (95 % ub) |",
           "|---|---|---|---|---|---|---|---|"]
    for name, r in result["detectors"].items():
        s, g, n = r["snaps"], r["gestures"], r.get("negatives")
        rate = (lambda k: f"{n[k]['per_hour']:.1f} ({n[k]['upper95_per_hour']:.1f})" if n else "-")  # noqa: E731
        out.append(f"| {name} | {_f(s['precision'])} | {_f(s['recall'])} | {_f(s['f1'])} | "
                   f"{_f(s['median_abs_onset_error_ms'], '.1f')} ms | {_f(g['exact_count_share'])} | "
                   f"{rate('false_snaps')} | {rate('false_gestures')} |")
    ours = result["detectors"].get("ours")
    if ours:
        out += ["", "| background | snaps | recall | precision | exact count | negative hours | false snaps/h | false gestures/h (95 % ub) | false doubles and triples/h |",
                "|---|---|---|---|---|---|---|---|---|"]
        for kind, r in ours["by_kind"].items():
            s, g, n = r.get("snaps"), r.get("gestures"), r.get("negatives")
            out.append(f"| {kind} | {(s['tp'] + s['fn']) if s else 0} | {_f(s['recall'] if s else None)} | "
                       f"{_f(s['precision'] if s else None)} | {_f(g['exact_count_share'] if g else None)} | "
                       f"{_f(n['hours'] if n else None)} | {_f(n['false_snaps']['per_hour'] if n else None, '.1f')} | "
                       + (f"{n['false_gestures']['per_hour']:.1f} ({n['false_gestures']['upper95_per_hour']:.1f}) | "
                          f"{n['false_gestures_by_count']['2+']['per_hour']:.1f} |" if n else "- | - |"))
        out += ["", "Recall by local SNR: " + ", ".join(f"{b} dB {_f(v['recall'])} (n={v['snaps']})"
                                                       for b, v in ours["recall_by_snr_db"].items()) + "."]
        if "recall_by_peak_below_fs_db" in ours:
            out.append("Recall by snap peak, dB below full scale: " + ", ".join(
                f"{b} dB {_f(v['recall'])} (n={v['snaps']})" for b, v in ours["recall_by_peak_below_fs_db"].items()) + ".")
        out += ["Scenes by sample rate: " + ", ".join(f"{rate} Hz recall {_f(r['snaps']['recall'])} precision {_f(r['snaps']['precision'])}"
                                                      for rate, r in ours["scenes_by_rate"].items()) + ".",
                f"Gesture counts (true -> reported): `{json.dumps(ours['gestures']['confusion'])}`."]
        if ours.get("negatives"):
            out.append("False gestures on the negatives by count reported: " + _by_count(ours["negatives"]) + ".")
        bt = ours.get("best_threshold_within_false_gesture_target")
        out.append("Sweep (threshold: recall / precision / false gestures per hour): " + "; ".join(
            f"{p['threshold']:.2f}: {p['recall']:.3f} / {p['precision']:.3f} / {p['false_gestures_per_hour']:.1f}" for p in ours["sweep"])
            + (f". Highest recall within 0.5 false gestures/h: threshold {bt['threshold']:.2f}, recall {bt['recall']:.3f}."
               if bt else ". No swept threshold keeps false gestures within 0.5/h on these negatives."))
    seed = result["detectors"].get("seed (2 s blocks)")
    if seed:
        b = seed["blocks"]
        out.append(f"Seed, block level (2 s blocks, confidence >= {b['threshold']}): accuracy {_f(b['accuracy'])}, "
                   f"precision {_f(b['precision'])}, recall {_f(b['recall'])}; {b['blocks_with_several_snaps']} of "
                   f"{b['scene_blocks']} blocks hold 2-3 snaps, which it cannot count; it never says where in 2 s a snap is.")
    return "\n".join(out)


def plot_sweep(result: dict, path: Path, fg_target: float) -> None:
    """Recall against false gestures per hour, one point per threshold (ours) or jump (transient); `fg_target`: a dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    det = result["detectors"]
    for name, style, key in (("ours", "o-", "threshold"), ("transient", "s--", "jump_db")):
        if name not in det:
            continue
        pts = [p for p in det[name]["sweep"] if not np.isnan(p["false_gestures_per_hour"])]
        xs = [max(p["false_gestures_per_hour"], 0.05) for p in pts]
        ys = [p["recall"] for p in pts]
        ax.plot(xs, ys, style, label=f"{name} (labels: {key})")
        for p, x, y in zip(pts, xs, ys):
            ax.annotate(f"{p[key]:.3g}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    seed = det.get("seed (2 s blocks)")
    if seed and seed.get("negatives"):
        ax.plot([max(seed["negatives"]["false_gestures"]["per_hour"], 0.05)], [seed["snaps"]["recall"]], "r^",
                label="seed, 2 s blocks (event level)")
        ax.plot([max(seed["negatives"]["false_gestures"]["per_hour"], 0.05)],
                [seed["blocks"]["share_of_snaps_in_a_positive_block"] or 0], "rv", mfc="none",
                label="seed: snaps inside a positive block")
    ax.axvline(fg_target, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel(f"false gestures per hour on negatives ({result['dataset']['negative_hours']:.2f} h; 0 drawn at 0.05)")
    ax.set_ylabel("snap recall on scenes")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left")
    ax.set_title(f"Threshold sweep: {Path(result['model']['path']).name}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
