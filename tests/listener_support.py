"""Helpers for the listener tests: real TorchScript model files, a paho subscriber that records
what reaches the broker, and the listener as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from snap_mqtt.model_file import ModelMetadata, save_model

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo" / "demo-scene.flac"
DEMO_TRUTH = json.loads((ROOT / "demo" / "demo-scene.json").read_text())


class EnergySnapModel(torch.nn.Module):
    """A transparent stand-in for a trained model, obeying the same contract: it says "snap" when
    the loudest short frame of high-passed energy inside the onset region beats everything before
    the region by `margin_db`. Deterministic, so the listener tests do not depend on training."""

    def __init__(self, lo: int, hi: int, frame: int = 80, margin_db: float = 15.0, scale: float = 1.0):
        super().__init__()
        self.lo = lo
        self.hi = hi
        self.frame = frame
        self.margin_db = margin_db
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x[:, 1:] - x[:, :-1]
        e = torch.nn.functional.avg_pool1d((d * d).unsqueeze(1), self.frame, self.frame // 2).squeeze(1)
        step = self.frame // 2
        lo = self.lo // step
        hi = min(e.shape[1], (self.hi + 160) // step)
        pre = e[:, :lo].amax(dim=1) + 1e-9
        region = e[:, lo:hi].amax(dim=1) + 1e-9
        ratio_db = 10.0 * torch.log10(region / pre)
        return torch.sigmoid((ratio_db - self.margin_db) * self.scale)


class NeverModel(torch.nn.Module):
    """A valid snap-mqtt model that never fires (to see a model swap take effect)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0])


def metadata(threshold: float = 0.5, version: str = "test-energy") -> ModelMetadata:
    return ModelMetadata(sample_rate=16000, window_samples=4000, hop_samples=320, threshold=threshold,
                         trainer_version=version, onset_min_samples=1440, onset_max_samples=3360,
                         architecture="energy ratio (test stand-in)")


def make_energy_model(path: Path, threshold: float = 0.5) -> Path:
    module = torch.jit.script(EnergySnapModel(1440, 3360))
    return save_model(module, metadata(threshold), path)


def make_never_model(path: Path) -> Path:
    return save_model(torch.jit.script(NeverModel()), metadata(version="test-never"), path)
