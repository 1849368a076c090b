"""CPU seconds per second of audio of the listener's detection path (SnapPipeline: resampler,
detector, gesture counter, model), one torch thread, in this process."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np


def pipeline_cpu(model, x: np.ndarray, rate: int, hop_samples: int | None = None, block_seconds: float = 0.02,
                 max_seconds: float | None = None, onset_gate: bool = True) -> dict:
    """Feed `x` (at `rate`) in capture-sized blocks; process CPU time per audio second.
    `hop_samples` (model samples) overrides the model's hop, to compare models at the same hop."""
    from snap_mqtt.pipeline import DetectionParams, SnapPipeline

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


def run_cpu(default_model: Path, seed_model: Path | None, audio: np.ndarray, rate: int, seconds: float) -> dict:
    import torch

    from snap_mqtt.model_file import load_model

    torch.set_num_threads(1)
    ours = load_model(default_model)
    # the listener's capture block (audio.block_seconds, default 0.02 s) sets how many windows one
    # forward call scores: at 0.02 s one window per call, where torch's fixed per-call cost dominates
    # the onset gate (Detector) keeps windows where no onset can be placed from the model; the
    # seed's model is run through the same pipeline, so it is gated too unless said otherwise
    out: dict = {"ours": pipeline_cpu(ours, audio, rate, max_seconds=seconds),
                 "ours_no_gate": pipeline_cpu(ours, audio, rate, max_seconds=seconds, onset_gate=False),
                 "ours_block_0.05": pipeline_cpu(ours, audio, rate, block_seconds=0.05, max_seconds=seconds),
                 "ours_block_0.1": pipeline_cpu(ours, audio, rate, block_seconds=0.1, max_seconds=seconds)}
    if seed_model is not None and seed_model.exists():
        seed = load_model(seed_model)
        hop_s = ours.metadata.hop_samples / ours.metadata.sample_rate
        same_hop = int(round(hop_s * seed.metadata.sample_rate))
        # the seed's model costs much more per window: a shorter stretch gives a stable figure
        short = min(seconds, 15.0)
        out["seed_same_hop"] = pipeline_cpu(seed, audio, rate, hop_samples=same_hop, max_seconds=short)
        out["seed_same_hop_block_0.1"] = pipeline_cpu(seed, audio, rate, hop_samples=same_hop, block_seconds=0.1,
                                                      max_seconds=short)
        out["seed_same_hop_no_gate"] = pipeline_cpu(seed, audio, rate, hop_samples=same_hop, max_seconds=short,
                                                    onset_gate=False)
        # the seed's own way: 2 s blocks, every block classified (no onset to gate on)
        out["seed_own_2s_blocks"] = pipeline_cpu(seed, audio, rate, max_seconds=seconds, onset_gate=False)
        out["seed_over_ours_same_hop"] = (out["seed_same_hop"]["cpu_seconds_per_audio_second"]
                                          / out["ours"]["cpu_seconds_per_audio_second"])
        out["seed_over_ours_same_hop_no_gate"] = (out["seed_same_hop_no_gate"]["cpu_seconds_per_audio_second"]
                                                  / out["ours_no_gate"]["cpu_seconds_per_audio_second"])
        # what the listener spends against what running the seed's model at that hop would
        out["seed_ungated_over_listener"] = (out["seed_same_hop_no_gate"]["cpu_seconds_per_audio_second"]
                                             / out["ours"]["cpu_seconds_per_audio_second"])
        out["seed_over_ours_same_hop_block_0.1"] = (out["seed_same_hop_block_0.1"]["cpu_seconds_per_audio_second"]
                                                    / out["ours_block_0.1"]["cpu_seconds_per_audio_second"])
    return out
