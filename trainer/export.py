"""Export a trained SnapNet as a snap-mqtt model file (TorchScript + metadata), and load one back
as a trainable SnapNet (fine-tuning, enrollment)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from snap_mqtt.model_file import METADATA_NAME, ModelFileError, ModelMetadata, load_model, save_model
from trainer.data import WindowSpec
from trainer.model import ExportedSnapNet, ModelConfig, SnapNet


def build_metadata(cfg: ModelConfig, spec: WindowSpec, hop_samples: int, threshold: float,
                   data: dict[str, Any] | None = None, test_metrics: dict[str, Any] | None = None,
                   enrollment: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                   follow_threshold: float | None = None) -> ModelMetadata:
    """`follow_threshold` (`snap-train tune`) is kept only below the threshold: at or above it a
    second bar would change nothing."""
    from trainer import __version__

    ext = {"model_config": cfg.to_dict(),
           "window_spec": {"margin_early": spec.margin_early, "margin_late": spec.margin_late}}
    ext.update(extra or {})
    threshold = float(min(max(threshold, 0.01), 0.99))
    follow = float(follow_threshold) if follow_threshold is not None and 0 < follow_threshold < threshold else None
    return ModelMetadata(
        sample_rate=cfg.sample_rate, window_samples=cfg.window_samples, hop_samples=int(hop_samples),
        threshold=threshold, follow_threshold=follow, trainer_version=__version__,
        onset_min_samples=spec.onset_min, onset_max_samples=spec.onset_max,
        architecture=cfg.describe(), data=data or {}, test_metrics=test_metrics or {},
        enrollment=enrollment, extra=ext)


def export_model(net: SnapNet, metadata: ModelMetadata, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Script `net` (eval mode, frozen parameters) and write it with its metadata atomically.
    Refuses to replace an existing file unless `overwrite`."""
    import torch

    p = Path(path)
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p}: exists; pass --overwrite to replace it (or choose another path)")
    if metadata.sample_rate != net.cfg.sample_rate or metadata.window_samples != net.cfg.window_samples:
        raise ValueError("metadata sample_rate/window_samples disagree with the network's config")
    net = copy.deepcopy(net).cpu().eval()
    for prm in net.parameters():
        prm.requires_grad_(False)  # also lets the listener call it inside torch.inference_mode()
    scripted = torch.jit.script(ExportedSnapNet(net))
    return save_model(scripted, metadata, p)


def load_trainable(path: str | os.PathLike[str]) -> tuple[SnapNet, ModelMetadata]:
    """Rebuild a trainable SnapNet from a model file written by `export_model` (weights and config)."""
    m = load_model(path)
    raw_cfg = m.metadata.extra.get("model_config")
    if not raw_cfg:
        raise ModelFileError(f"{path}: model file has no 'model_config' in its metadata; it was not "
                             "written by snap-train and cannot be fine-tuned")
    cfg = ModelConfig.from_dict(raw_cfg)
    net = SnapNet(cfg)
    state = {k[len("net."):]: v for k, v in m.module.state_dict().items() if k.startswith("net.")}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: weights do not match its model_config ({str(exc).splitlines()[0]})") from None
    for prm in net.parameters():
        prm.requires_grad_(True)
    return net, m.metadata


def window_spec_of(meta: ModelMetadata) -> WindowSpec:
    ws = meta.extra.get("window_spec", {})
    return WindowSpec(sample_rate=meta.sample_rate, window_samples=meta.window_samples,
                      onset_min=meta.onset_min_samples, onset_max=meta.onset_max_samples,
                      margin_early=int(ws.get("margin_early", 160)), margin_late=int(ws.get("margin_late", 320)))


def read_metadata_json(path: str | os.PathLike[str]) -> dict:
    """The raw metadata dict of a model file (for reports)."""
    import torch

    extra = {METADATA_NAME: ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[METADATA_NAME])
