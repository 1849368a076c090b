"""`snap-train evaluate`: event-level evaluation of a model on scenes and negatives.

Runs the very `SnapPipeline` the listener runs (streaming resampler, detector, gesture counter),
fed in blocks as a sound card would, over every scene and negative recording built by
`snap-train scenes`, and reports snap precision/recall/F1 (one-to-one matching within 150 ms), the
median onset error, exact gesture counts with a confusion table, false snaps and false gestures per
hour on the negatives (with a 95 % upper bound), per kind of background and per sample rate,
recall by SNR band, and a threshold sweep (PNG; the formatting is trainer/eval_report.py). The
seed's approach and a transient detector are scored in the same run by the same code
(trainer/baselines.py).

The threshold sweep replays the model's window probabilities recorded on the first pass: the
windows a detector scores do not depend on the threshold, so every other threshold runs the whole
pipeline again without paying for the network again.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from snap_mqtt.detector import BUSY_SECONDS
from trainer import eval_report
from trainer.metrics import (
    LEVEL_BANDS_DB,
    Gesture,
    GestureScore,
    Rate,
    SnapScore,
    SweepPoint,
    best_threshold,
    false_gestures_by_count,
    recall_by_band,
)

log = logging.getLogger(__name__)

DEFAULT_SWEEP = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)
TRANSIENT_SWEEP_DB = (8.0, 12.0, 15.0, 18.0, 22.0, 26.0, 30.0, 36.0, 42.0)
TARGETS = {"snap_f1": 0.95, "exact_count_share": 0.90, "false_gestures_per_hour": 0.5,
           "false_snaps_per_hour": 3.0}


@dataclass
class Recording:
    file: Path
    role: str  # "scene" or "negative"
    kind: str
    sample_rate: int
    seconds: float
    snaps: list[float] = field(default_factory=list)
    snrs: list[float] = field(default_factory=list)
    gestures: list[Gesture] = field(default_factory=list)
    peaks_dbfs: list[float] | None = None  # per snap; None: an index written before it was recorded


@dataclass
class Detections:
    """What one detector reported on one recording."""

    snaps: list[float]
    gestures: list[Gesture]
    delays: list[float] = field(default_factory=list)  # detected_at - onset (audio time), per snap
    phase: int = 0  # where the pipeline's windows started (Detector.phase): a replay must use the same
    confidences: list[float] = field(default_factory=list)  # per snap (our pipeline only)


def load_recordings(scenes_dir: Path) -> list[Recording]:
    from trainer.scenes import load_index

    return recordings_of(load_index(scenes_dir), scenes_dir)


def recordings_of(index: dict, scenes_dir: Path) -> list[Recording]:
    """The recordings a scenes index (`trainer.scenes.load_index`) lists, with their truth."""
    recs = []
    for s in index["scenes"]:
        recs.append(Recording(scenes_dir / s["file"], "scene", s["kind"], int(s["sample_rate"]), float(s["seconds"]),
                              [float(p["time"]) for p in s["snaps"]], [float(p["snr_db"]) for p in s["snaps"]],
                              [Gesture.of(g["snaps"], g["count"]) for g in s["gestures"]],
                              [float(p["peak_dbfs"]) for p in s["snaps"]]
                              if all(p.get("peak_dbfs") is not None for p in s["snaps"]) else None))
    for n in index["negatives"]:
        recs.append(Recording(scenes_dir / n["file"], "negative", n["kind"], int(n["sample_rate"]), float(n["seconds"])))
    return recs


# ---------------------------------------------------------------------------------------------
# our detector: the listener's SnapPipeline, with recorded / replayed window probabilities

class RecordingScorer:
    """Scores windows with the model and keeps every probability, in window order."""

    def __init__(self, model: Any):
        import torch

        self._torch = torch
        self.model = model
        self.probs: list[np.ndarray] = []
        self.cpu_seconds = 0.0

    def __call__(self, wins: np.ndarray) -> np.ndarray:
        t0 = time.thread_time()  # (process_time is slow here: it sums over all of torch's threads)
        p = self.model.predict(self._torch.from_numpy(np.array(wins))).float().numpy()
        self.cpu_seconds += time.thread_time() - t0
        self.probs.append(p)
        return p


class ReplayScorer:
    """Gives back recorded probabilities in window order, whatever the batching."""

    def __init__(self, probs: list[np.ndarray]):
        self.flat = np.concatenate(probs) if probs else np.zeros(0)
        self.i = 0

    def __call__(self, wins: np.ndarray) -> np.ndarray:
        p = self.flat[self.i:self.i + len(wins)]
        if len(p) != len(wins):
            raise RuntimeError("replayed scores do not match the windows")
        self.i += len(wins)
        return p


class _Tap:
    """Wraps the pipeline's streaming resampler and keeps its output (the model-rate audio)."""

    def __init__(self, inner: Any):
        self.inner, self.out = inner, []

    def process(self, x: np.ndarray) -> np.ndarray:
        y = self.inner.process(x)
        self.out.append(y)
        return y

    def flush(self) -> np.ndarray:
        y = self.inner.flush()
        self.out.append(y)
        return y

    def reset(self) -> None:
        self.inner.reset()


def run_pipeline(scorer: Any, spec: Any, threshold: float, x: np.ndarray, rate: int,
                 block_seconds: float = 0.1, tap: list | None = None, follow: float | None = None,
                 phase: int | None = None, busy: float | None = None) -> Detections:
    """Feed `x` (at `rate`) through a SnapPipeline in blocks; `tap` (a list) receives the
    model-rate audio the pipeline's resampler produced. `phase` overrides the pipeline's window
    phase (a replay of model-rate audio recorded behind a resampler). `busy`: the busy guard's
    seconds (None: the listener's default; 0: off)."""
    from snap_mqtt.events import GestureEvent, SnapEvent
    from snap_mqtt.pipeline import DetectionParams, SnapPipeline

    params = DetectionParams(threshold=threshold, follow_threshold=follow)
    pipe = SnapPipeline(scorer, params if busy is None else replace(params, busy_seconds=busy), input_rate=rate,
                        spec=spec)
    if tap is not None:
        pipe.resampler = _Tap(pipe.resampler)
    if phase is not None:
        pipe.detector.set_phase(phase)
    events = []
    step = max(1, int(block_seconds * rate))
    for i in range(0, len(x), step):
        events.extend(pipe.process(x[i:i + step]))
    events.extend(pipe.flush())
    if tap is not None:
        tap.append(np.concatenate(pipe.resampler.out) if pipe.resampler.out else np.zeros(0, np.float32))
    snaps = [e for e in events if isinstance(e, SnapEvent)]
    gestures = [e for e in events if isinstance(e, GestureEvent)]
    return Detections([s.time for s in snaps], [Gesture.of([s.time for s in g.snaps], g.count) for g in gestures],
                      [s.detected_at - s.time for s in snaps], pipe.detector.phase, [s.confidence for s in snaps])


# ---------------------------------------------------------------------------------------------
# scoring (shared by every detector)

def score(recs: list[Recording], dets: list[Detections]) -> dict:
    """Overall, per-kind and per-rate figures for one detector at one setting."""
    def block(sel: list[int]) -> dict:
        s, g = SnapScore(), GestureScore()
        fs = 0
        false_counts: list[int] = []  # the count of each false gesture
        hours = 0.0
        hits: list[bool] = []
        snrs: list[float] = []
        below_fs: list[float] | None = []  # each snap's peak, dB below full scale
        delays: list[float] = []
        for i in sel:
            r, d = recs[i], dets[i]
            if r.role == "scene":
                m = s.add(r.snaps, d.snaps)
                g.add(r.gestures, d.gestures)
                matched = {a for a, _ in m.pairs}
                hits.extend(k in matched for k in range(len(r.snaps)))
                snrs.extend(r.snrs)
                if below_fs is not None and r.peaks_dbfs is not None:
                    below_fs.extend(-v for v in r.peaks_dbfs)
                else:
                    below_fs = None
                delays.extend(d.delays[j] for _, j in m.pairs if j < len(d.delays))
            else:
                fs += len(d.snaps)
                false_counts.extend(x.count for x in d.gestures)
                hours += r.seconds / 3600
        out: dict[str, Any] = {}
        if any(recs[i].role == "scene" for i in sel):
            out["snaps"] = s.summary()
            out["gestures"] = g.summary()
            out["recall_by_snr_db"] = recall_by_band(snrs, hits)
            if below_fs:
                out["recall_by_peak_below_fs_db"] = recall_by_band(below_fs, hits, LEVEL_BANDS_DB)
            if delays:
                out["decision_delay_ms"] = {"p50": float(np.percentile(delays, 50) * 1000),
                                            "p95": float(np.percentile(delays, 95) * 1000)}
        if hours > 0:
            out["negatives"] = {"hours": hours, "false_snaps": Rate(fs, hours).summary(),
                                "false_gestures": Rate(len(false_counts), hours).summary(),
                                "false_gestures_by_count": false_gestures_by_count(false_counts, hours)}
        return out

    allidx = list(range(len(recs)))
    res = block(allidx)
    res["by_kind"] = {k: block([i for i in allidx if recs[i].kind == k]) for k in sorted({r.kind for r in recs})}
    res["scenes_by_rate"] = {str(rate): block([i for i in allidx if recs[i].role == "scene" and recs[i].sample_rate == rate])
                             for rate in sorted({r.sample_rate for r in recs if r.role == "scene"})}
    return res


def sweep_point(threshold: float, res: dict) -> SweepPoint:
    s, g, n = res["snaps"], res["gestures"], res.get("negatives")
    return SweepPoint(threshold, s["precision"], s["recall"], s["f1"],
                      n["false_snaps"]["per_hour"] if n else float("nan"),
                      n["false_gestures"]["per_hour"] if n else float("nan"), g["exact_count_share"])


# ---------------------------------------------------------------------------------------------
# the detectors

@dataclass
class ModelPass:
    """One run of a model through the pipeline over recordings, with what a replay needs: every
    window's probability and the model-rate audio, per recording."""

    spec: Any
    recorders: list[RecordingScorer]
    model_audio: list[np.ndarray]
    detections: list[Detections]  # of this run, at its threshold
    wall_seconds: float
    cpu_seconds: float
    busy: float | None = None  # the busy guard's seconds it ran with (None: the default)

    def replay(self, threshold: float, follow: float | None = None) -> list[Detections]:
        """The pipeline at another threshold on the same audio and probabilities (the windows scored
        do not depend on the thresholds), without paying for the network again."""
        return [run_pipeline(ReplayScorer(rec.probs), self.spec, threshold, y, self.spec.sample_rate,
                             block_seconds=1.0, follow=follow, phase=d.phase, busy=self.busy)
                for rec, y, d in zip(self.recorders, self.model_audio, self.detections)]


def record_pass(model: Any, recs: list[Recording], audio: dict, threshold: float, block_seconds: float,
                follow: float | None = None, phase: int | None = None, busy: float | None = None) -> ModelPass:
    """Run the model's pipeline (resampler and all) over every recording, keeping what a replay needs.
    `phase` overrides where the pipeline's windows start (None: its own alignment)."""
    from snap_mqtt.detector import WindowSpec

    spec = WindowSpec.from_metadata(model.metadata)
    recorders, model_audio, dets = [], [], []
    t0, c0 = time.monotonic(), time.process_time()
    for i, r in enumerate(recs):
        rec = RecordingScorer(model)
        dets.append(run_pipeline(rec, spec, threshold, audio[i], r.sample_rate, block_seconds, tap=model_audio,
                                 follow=follow, phase=phase, busy=busy))
        recorders.append(rec)
    return ModelPass(spec, recorders, model_audio, dets, time.monotonic() - t0, time.process_time() - c0, busy)


def evaluate_model(model: Any, recs: list[Recording], audio: dict, thresholds: list[float],
                   operating: float, block_seconds: float, follow: float | None = None,
                   busy: float | None = None) -> dict:
    """`follow`: the follow threshold (None: the model's; at each swept threshold the lower of the two).
    `busy`: the busy guard's seconds (None: the listener's default; 0: off)."""
    run = record_pass(model, recs, audio, operating, block_seconds, follow, busy=busy)
    spec, recorders, wall, cpu = run.spec, run.recorders, run.wall_seconds, run.cpu_seconds
    audio_s = sum(r.seconds for r in recs)
    log.info("model pass: %.0f s of audio in %.0f s (%.0f s CPU)", audio_s, wall, cpu)
    sweep = []
    ops = None
    for t in sorted(set(thresholds) | {operating}):
        dets = run.detections if t == operating else run.replay(t, follow)  # the real run at the operating point
        res = score(recs, dets)
        sweep.append(sweep_point(t, res))
        log.info("threshold %.2f: recall %.3f, precision %.3f", t, sweep[-1].recall, sweep[-1].precision)
        if t == operating:
            ops = res
    assert ops is not None
    ops["threshold"] = operating
    ops["follow_threshold"] = follow if follow is not None else spec.follow_threshold
    ops["busy_seconds"] = busy if busy is not None else BUSY_SECONDS
    ops["sweep"] = [p.as_dict() for p in sweep]
    ops["cpu_seconds_per_audio_second"] = cpu / audio_s
    ops["model_cpu_seconds_per_audio_second"] = sum(r.cpu_seconds for r in recorders) / audio_s
    ops["wall_seconds"] = wall
    bt = best_threshold(sweep, TARGETS["false_gestures_per_hour"])
    ops["best_threshold_within_false_gesture_target"] = bt.as_dict() if bt else None
    return ops


def evaluate_transient(recs: list[Recording], audio16: dict) -> dict:
    from snap_mqtt.gestures import GestureCounter
    from trainer.baselines import TransientParams, transient_onsets

    def detect(jump: float) -> list[Detections]:
        out = []
        for i, _ in enumerate(recs):
            times = transient_onsets(audio16[i], 16000, TransientParams(jump_db=jump))
            out.append(Detections(times, _gestures(times, GestureCounter)))
        return out

    default = TransientParams().jump_db
    sweep, ops = [], None
    for jump in sorted(set(TRANSIENT_SWEEP_DB) | {default}):
        res = score(recs, detect(jump))
        sweep.append({**sweep_point(jump, res).as_dict(), "jump_db": jump})
        if jump == default:
            ops = res
    assert ops is not None
    ops["params"] = TransientParams().__dict__
    ops["sweep"] = sweep
    return ops


def evaluate_seed(seed_model: Any, recs: list[Recording], audio44: dict) -> dict:
    """The seed's way: non-overlapping 2 s blocks, 'snap' at confidence >= 0.65, one event in the
    middle of a positive block (it cannot say where in the block, nor how many)."""
    from snap_mqtt.gestures import GestureCounter
    from trainer.baselines import SEED_BLOCK, SEED_RATE, seed_block_probs

    thr = float(seed_model.metadata.threshold)
    dets = []
    tp = fp = fn = tn = 0
    multi = snaps_in_pos = total_snaps = 0
    neg_blocks_pos = 0
    neg_hours = 0.0
    block_s = SEED_BLOCK / SEED_RATE
    for i, r in enumerate(recs):
        p = seed_block_probs(seed_model, audio44[i])
        pos = p >= thr
        times = [(k + 0.5) * block_s for k in np.flatnonzero(pos)]
        dets.append(Detections(times, _gestures(times, GestureCounter)))
        if r.role == "scene":
            snaps = np.asarray(r.snaps)
            for k in range(len(p)):
                n_in = int(np.sum((snaps >= k * block_s) & (snaps < (k + 1) * block_s)))
                label = n_in > 0
                tp += int(label and pos[k])
                fp += int(pos[k] and not label)
                fn += int(label and not pos[k])
                tn += int(not label and not pos[k])
                multi += int(n_in > 1)
                total_snaps += n_in
                snaps_in_pos += n_in if pos[k] else 0
        else:
            neg_blocks_pos += int(pos.sum())
            neg_hours += len(p) * block_s / 3600
    res = score(recs, dets)
    blocks = tp + fp + fn + tn
    res["blocks"] = {
        "block_seconds": block_s, "threshold": thr, "scene_blocks": blocks,
        "accuracy": (tp + tn) / blocks if blocks else None,
        "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / (tp + fn) if tp + fn else None,
        "blocks_with_several_snaps": multi,
        "share_of_snaps_in_a_positive_block": snaps_in_pos / total_snaps if total_snaps else None,
        "negative_positive_blocks": Rate(neg_blocks_pos, neg_hours).summary() if neg_hours else None,
    }
    res["model"] = {"path": str(seed_model.path), **seed_model.metadata.extra}
    return res


def _gestures(times: list[float], counter_cls: Any, gap: float = 0.6, max_count: int = 3) -> list[Gesture]:
    """Offline gesture counting with the listener's GestureCounter."""
    from snap_mqtt.events import SnapEvent

    c = counter_cls(gap, max_count)
    out = []
    for t in sorted(times):
        _, closed = c.add(SnapEvent(time=t, confidence=1.0, detected_at=t))
        out.extend(closed)
    out.extend(c.flush())
    return [Gesture.of([s.time for s in g.snaps], g.count) for g in out]


# ---------------------------------------------------------------------------------------------
# targets

def check_targets(ours: dict) -> dict:
    n = ours.get("negatives")
    vals = {"snap_f1": (ours["snaps"]["f1"], ">="), "exact_count_share": (ours["gestures"]["exact_count_share"], ">="),
            "false_gestures_per_hour": (n["false_gestures"]["per_hour"] if n else None, "<="),
            "false_snaps_per_hour": (n["false_snaps"]["per_hour"] if n else None, "<=")}
    out = {}
    for k, (v, op) in vals.items():
        t = TARGETS[k]
        met = v is not None and (v >= t if op == ">=" else v <= t)
        out[k] = {"value": v, "target": t, "op": op, "met": met}
    if n:
        # with little negative audio a zero count proves little: say whether the bound proves the target
        for k in ("false_gestures", "false_snaps"):
            key = f"{k}_per_hour"
            out[key]["upper95"] = n[k]["upper95_per_hour"]
            out[key]["proven_at_95"] = n[k]["upper95_per_hour"] <= TARGETS[key]
    return out


# ---------------------------------------------------------------------------------------------
# CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None, help="model file (default: the shipped default model)")
    parser.add_argument("--scenes", type=Path, required=True, help="folder built by `snap-train scenes`")
    parser.add_argument("--out", type=Path, default=None,
                        help="new folder for evaluation.json, report.txt and sweep.png (default: SCENES/eval-<model>)")
    parser.add_argument("--threshold", type=float, default=None, help="operating threshold (default: the model's)")
    parser.add_argument("--follow-threshold", type=float, default=None,
                        help="threshold for snaps within the gesture gap of a sure one (default: the model's)")
    parser.add_argument("--sweep", default=",".join(str(t) for t in DEFAULT_SWEEP), help="thresholds to sweep")
    parser.add_argument("--baselines", default="seed,transient", help="comma list of seed, transient, or 'none'")
    parser.add_argument("--seed-model", type=Path, default=None,
                        help="the seed baseline's model file (trained into OUT/seed-baseline.pt from --data if absent)")
    parser.add_argument("--data", type=Path, default=None, help="data folder to train the seed baseline on (train part)")
    parser.add_argument("--block-seconds", type=float, default=0.1, help="audio block size fed to the pipeline")
    parser.add_argument("--busy-seconds", type=float, default=None,
                        help="the detector's busy guard (docs/detection.md; default: the listener's; 0: off)")


def _new_dir(p: Path) -> Path:
    """`p`, or p-2, p-3...: an earlier evaluation is never overwritten."""
    k, q = 1, p
    while q.exists() and any(q.iterdir()):
        k += 1
        q = p.with_name(f"{p.name}-{k}")
    return q


def run(args: argparse.Namespace) -> int:
    import torch

    from snap_mqtt.audio_io import read_audio
    from snap_mqtt.model_file import default_model_path, load_model
    from trainer.cli import UsageError

    torch.set_num_threads(1)
    wanted = {b.strip() for b in str(args.baselines).split(",") if b.strip() and b.strip() != "none"}
    if wanted - {"seed", "transient"}:
        raise UsageError(f"--baselines: unknown {', '.join(sorted(wanted - {'seed', 'transient'}))} (seed, transient, none)")
    try:
        thresholds = [float(t) for t in str(args.sweep).split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"--sweep {args.sweep!r}: expected comma-separated thresholds") from None
    if any(not 0 < t < 1 for t in thresholds):
        raise UsageError("--sweep: thresholds must lie in (0, 1)")
    recs = load_recordings(args.scenes)
    model = load_model(args.model or default_model_path())
    if not any(r.role == "scene" for r in recs):
        raise UsageError(f"{args.scenes}: the scenes index lists no scene")
    operating = float(args.threshold if args.threshold is not None else model.metadata.threshold)
    if not 0 < operating < 1:
        raise UsageError(f"--threshold {operating}: must lie in (0, 1)")
    if args.follow_threshold is not None and not 0 < args.follow_threshold < 1:
        raise UsageError(f"--follow-threshold {args.follow_threshold}: must lie in (0, 1)")
    if args.busy_seconds is not None and not 0 <= args.busy_seconds <= 10:
        raise UsageError(f"--busy-seconds {args.busy_seconds}: expected seconds in [0, 10]")
    out = _new_dir(args.out or args.scenes / f"eval-{model.path.stem}")
    out.mkdir(parents=True, exist_ok=True)

    audio = {i: read_audio(r.file).samples for i, r in enumerate(recs)}
    for i, r in enumerate(recs):
        if abs(len(audio[i]) / r.sample_rate - r.seconds) > 0.01:
            raise UsageError(f"{r.file}: {len(audio[i]) / r.sample_rate:.2f} s of audio, the index says {r.seconds:.2f} s")
    result: dict[str, Any] = {
        "model": {"path": str(model.path), "threshold": operating,
                  "follow_threshold": args.follow_threshold if args.follow_threshold is not None
                  else model.metadata.follow_threshold, "sample_rate": model.metadata.sample_rate,
                  "window_samples": model.metadata.window_samples, "hop_samples": model.metadata.hop_samples,
                  "trainer_version": model.metadata.trainer_version},
        "scenes_dir": str(args.scenes),
        "dataset": {"scenes": sum(r.role == "scene" for r in recs),
                    "scene_hours": sum(r.seconds for r in recs if r.role == "scene") / 3600,
                    "snaps": sum(len(r.snaps) for r in recs), "gestures": sum(len(r.gestures) for r in recs),
                    "negative_hours": sum(r.seconds for r in recs if r.role == "negative") / 3600,
                    "negative_kinds": sorted({r.kind for r in recs if r.role == "negative"})},
        "detectors": {},
    }
    log.info("evaluating %s on %d recordings", model.path, len(recs))
    result["detectors"]["ours"] = evaluate_model(model, recs, audio, thresholds, operating, args.block_seconds,
                                                   args.follow_threshold, args.busy_seconds)
    result["targets"] = check_targets(result["detectors"]["ours"])
    if "transient" in wanted:
        log.info("transient baseline")
        audio16 = {i: read_audio(r.file, 16000).samples for i, r in enumerate(recs)}
        result["detectors"]["transient"] = evaluate_transient(recs, audio16)
        del audio16
    if "seed" in wanted:
        seed_path = args.seed_model or out / "seed-baseline.pt"
        if not seed_path.exists():
            if args.data is None:
                print(f"seed baseline skipped: {seed_path} does not exist and no --data to train it on")
                seed_path = None
            else:
                from trainer.baselines import train_seed

                log.info("training the seed baseline into %s", seed_path)
                train_seed(args.data, seed_path)
        if seed_path is not None:
            from trainer.baselines import SEED_RATE

            log.info("seed baseline %s", seed_path)
            audio44 = {i: read_audio(r.file, SEED_RATE).samples for i, r in enumerate(recs)}
            result["detectors"]["seed (2 s blocks)"] = evaluate_seed(load_model(seed_path), recs, audio44)
            del audio44
    report = eval_report.format_report(result)
    (out / "evaluation.json").write_text(json.dumps(result, indent=1, default=float))
    (out / "report.txt").write_text(report + "\n")
    (out / "summary.md").write_text(eval_report.markdown_summary(result) + "\n")
    eval_report.plot_sweep(result, out / "sweep.png", TARGETS["false_gestures_per_hour"])
    print(report)
    print(f"\nwritten: {out / 'evaluation.json'}, {out / 'report.txt'}, {out / 'sweep.png'}")
    return 0
