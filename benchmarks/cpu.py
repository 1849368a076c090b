"""CPU seconds per second of audio of the listener's detection path (SnapPipeline: resampler,
detector, gesture counter, model), one torch thread, in this process."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np


def pipeline_cpu(model, x: np.ndarray, rate: int, hop_samples: int | None = None, block_seconds: float = 0.02,
                 max_seconds: float | None = None, onset_gate: bool = True, start_seconds: float = 0.0) -> dict:
    """Feed `x` (at `rate`) in capture-sized blocks; process CPU time per audio second.
    `hop_samples` (model samples) overrides the model's hop, to compare models at the same hop."""
    from snap_mqtt.pipeline import DetectionParams, SnapPipeline

    x = x[int(start_seconds * rate):]
    if max_seconds is not None:
        x = x[: int(max_seconds * rate)]
    pipe = SnapPipeline(model, DetectionParams(hop_samples=hop_samples, onset_gate=onset_gate), input_rate=rate)
    step = max(1, int(block_seconds * rate))
    pipe.process(x[:step])  # first call pays one-off costs (TorchScript profiling runs)
    load0 = os.getloadavg()[0]
    c0, w0 = time.process_time(), time.monotonic()
    n_events = 0
    for i in range(step, len(x), step):
        n_events += len(pipe.process(x[i:i + step]))
    cpu, wall = time.process_time() - c0, time.monotonic() - w0
    audio = (len(x) - step) / rate
    return {"model": str(getattr(model, "path", "")), "audio_seconds": audio,
            "hop_samples": pipe.detector.hop, "model_rate": pipe.sample_rate,
            "windows_per_second": pipe.sample_rate / pipe.detector.hop,
            "cpu_seconds_per_audio_second": cpu / audio, "wall_seconds_per_audio_second": wall / audio,
            "events": n_events, "onset_gate": onset_gate, "loadavg_1min": [load0, os.getloadavg()[0]]}


def run_cpu(default_model: Path, seed_model: Path | None, audio: np.ndarray, rate: int, seconds: float,
            rounds: int = 5) -> dict:
    """Every configuration once per round, rounds interleaved: this machine's speed drifts by up to
    2x over minutes (shared cores), so a ratio of two runs made a minute apart says little. Round r
    runs every configuration on the r-th stretch of the audio (the gated path's cost depends on
    how many onsets the audio holds). Each figure is CPU over audio summed over the rounds; each
    ratio the median of the per-round ratios, with their range."""
    import torch

    from snap_mqtt.model_file import load_model

    torch.set_num_threads(1)
    ours = load_model(default_model)
    per_round = max(1.0, seconds / rounds)
    # the listener's capture block (audio.block_seconds, default 0.02 s) sets how many windows one
    # forward call scores: at 0.02 s one window per call, where torch's fixed per-call cost dominates.
    # The onset gate (Detector) keeps windows where no onset can be placed from the model; the
    # seed's model is run through the same pipeline, so it is gated too unless said otherwise
    configs: dict[str, tuple] = {
        "ours": (ours, {}),
        "ours_no_gate": (ours, {"onset_gate": False}),
        "ours_block_0.05": (ours, {"block_seconds": 0.05}),
        "ours_block_0.1": (ours, {"block_seconds": 0.1})}
    if seed_model is not None and seed_model.exists():
        seed = load_model(seed_model)
        same_hop = int(round(ours.metadata.hop_samples / ours.metadata.sample_rate * seed.metadata.sample_rate))
        configs.update({
            "seed_same_hop": (seed, {"hop_samples": same_hop}),
            "seed_same_hop_block_0.1": (seed, {"hop_samples": same_hop, "block_seconds": 0.1}),
            "seed_same_hop_no_gate": (seed, {"hop_samples": same_hop, "onset_gate": False}),
            # the seed's own way: 2 s blocks, every block classified (no onset to gate on)
            "seed_own_2s_blocks": (seed, {"onset_gate": False})})
    runs: dict[str, list[dict]] = {k: [] for k in configs}
    for r in range(max(1, rounds)):
        for name, (model, kw) in configs.items():
            runs[name].append(pipeline_cpu(model, audio, rate, max_seconds=per_round, start_seconds=r * per_round, **kw))
    out: dict = {"rounds": rounds, "audio_seconds_per_round": per_round}
    for name, rs in runs.items():
        vals = [r["cpu_seconds_per_audio_second"] for r in rs]
        audio_s = sum(r["audio_seconds"] for r in rs)
        out[name] = {**rs[0], "audio_seconds": audio_s, "events": sum(r["events"] for r in rs),
                     "cpu_seconds_per_audio_second": sum(v * r["audio_seconds"] for v, r in zip(vals, rs)) / audio_s,
                     "per_round": vals, "loadavg_1min": [rs[0]["loadavg_1min"][0], rs[-1]["loadavg_1min"][1]]}

    def ratio(num: str, den: str) -> None:
        r = [a["cpu_seconds_per_audio_second"] / b["cpu_seconds_per_audio_second"] for a, b in zip(runs[num], runs[den])]
        out[f"{num}_over_{den}"] = {"median": float(np.median(r)), "min": float(min(r)), "max": float(max(r))}

    if "seed_same_hop" in runs:
        ratio("seed_same_hop", "ours")  # the target: the listener's path against the seed's model at its hop
        ratio("seed_same_hop_no_gate", "ours_no_gate")  # model against model
        ratio("seed_same_hop_no_gate", "ours")  # what the listener spends against running the seed's model
        ratio("seed_same_hop_block_0.1", "ours_block_0.1")
    return out
