"""The model file: the one contract between the trainer and the listener.

A model file is a TorchScript archive whose ``forward(x: float32[B, window_samples]) -> float32[B]``
maps raw mono waveforms at ``sample_rate`` to snap probabilities in [0, 1]; the log-mel front end
is inside it. Its metadata travels inside the same file as ``_extra_files["metadata.json"]``.

Only TorchScript is ever loaded (``torch.jit.load``): never pickles, so a model file downloaded
from somewhere cannot run arbitrary code at load time.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

FORMAT = "snap-mqtt-model"
SCHEMA_VERSION = 1
METADATA_NAME = "metadata.json"
DEFAULT_MODEL_NAME = "snap-default.pt"


from snap_mqtt.errors import ModelFileError  # noqa: E402  (re-exported: callers import it from here)


@dataclass(frozen=True)
class ModelMetadata:
    sample_rate: int
    window_samples: int
    hop_samples: int
    threshold: float
    trainer_version: str
    format: str = FORMAT
    schema_version: int = SCHEMA_VERSION
    # Where the onset of a snap sits in a window the model calls positive, in samples from the
    # window's start: [onset_min, onset_max]. The detector uses it to place events in time.
    onset_min_samples: int = 0
    onset_max_samples: int = 0
    # A snap within the gesture gap of a sure one (threshold reached) needs only this; None: one
    # threshold for every snap (files written before it existed).
    follow_threshold: float | None = None
    architecture: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    test_metrics: dict[str, Any] = field(default_factory=dict)
    enrollment: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.sample_rate

    @property
    def hop_seconds(self) -> float:
        return self.hop_samples / self.sample_rate

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<metadata>") -> "ModelMetadata":
        if raw.get("format") != FORMAT:
            raise ModelFileError(
                f"{source}: not a snap-mqtt model (metadata 'format' is {raw.get('format')!r}, "
                f"expected {FORMAT!r})"
            )
        if raw.get("schema_version") != SCHEMA_VERSION:
            raise ModelFileError(
                f"{source}: unsupported model schema_version {raw.get('schema_version')!r} "
                f"(this snap-mqtt reads {SCHEMA_VERSION})"
            )
        known = set(cls.__dataclass_fields__)
        missing = [k for k in ("sample_rate", "window_samples", "hop_samples", "threshold") if k not in raw]
        if missing:
            raise ModelFileError(f"{source}: model metadata lacks field(s) {', '.join(missing)}")
        kwargs = {k: v for k, v in raw.items() if k in known}
        kwargs.setdefault("trainer_version", "unknown")
        meta = cls(**kwargs)
        for name in ("sample_rate", "window_samples", "hop_samples"):
            if int(getattr(meta, name)) <= 0:
                raise ModelFileError(f"{source}: model metadata field '{name}' must be positive")
        if not 0.0 < float(meta.threshold) < 1.0:
            raise ModelFileError(f"{source}: model metadata field 'threshold' must lie in (0, 1)")
        if meta.follow_threshold is not None and not 0.0 < float(meta.follow_threshold) <= float(meta.threshold):
            raise ModelFileError(f"{source}: model metadata field 'follow_threshold' must lie in (0, threshold]")
        return meta


@dataclass(frozen=True)
class SnapModel:
    """A loaded model file: the scripted module (eval mode) and its metadata."""

    module: torch.jit.ScriptModule
    metadata: ModelMetadata
    path: Path

    @torch.inference_mode()
    def predict(self, windows: torch.Tensor) -> torch.Tensor:
        """[B, window_samples] float32 -> [B] probabilities."""
        return self.module(windows)


def load_model(path: str | os.PathLike[str]) -> SnapModel:
    """Load a snap-mqtt model file, or raise ModelFileError naming the file and the problem."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{p}: model file not found")
    if not p.is_file():
        raise ModelFileError(f"{p}: model path is not a file")
    extra = {METADATA_NAME: ""}
    try:
        module = torch.jit.load(str(p), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # torch raises RuntimeError/ValueError/zipfile errors for junk
        raise ModelFileError(f"{p}: not a TorchScript model file ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else exc!r})") from None
    raw = extra[METADATA_NAME]
    if not raw:
        raise ModelFileError(f"{p}: TorchScript file without snap-mqtt metadata (no {METADATA_NAME}); not a snap model")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{p}: model metadata is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{p}: model metadata is not a JSON object")
    meta = ModelMetadata.from_dict(data, source=str(p))
    module.eval()
    return SnapModel(module=module, metadata=meta, path=p)


def save_model(module: torch.jit.ScriptModule, metadata: ModelMetadata, path: str | os.PathLike[str]) -> Path:
    """Write a model file atomically (temporary file, then rename): a reader never sees half a model."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        torch.jit.save(module, tmp, _extra_files={METADATA_NAME: metadata.to_json()})
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a model file is meant to be shared
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def default_model_path() -> Path:
    """The shipped default model: the repository's models/ in a checkout or editable install,
    else the copy installed under <prefix>/share/snap-mqtt/models."""
    name = DEFAULT_MODEL_NAME
    candidates = [
        Path(__file__).resolve().parent.parent / "models" / name,
        Path(sys.prefix) / "share" / "snap-mqtt" / "models" / name,
    ]
    for c in candidates:
        if c.is_file():
            return c
    return candidates[0]
