"""The snap classifier: a log-mel front end and the seed's ConvNet, scriptable as one module.

`SnapNet.features(x)` turns raw mono windows [B, window_samples] into log-mel spectrograms
[B, 1, n_mels, frames]; `SnapNet.logits(spec)` classifies them. Training applies SpecAugment in
between; the exported file (`trainer.export`) runs `sigmoid(logits(features(x)))`.

Unlike the seed, the last pooling averages over frequency only and keeps a few time steps, so the
classifier knows *where* in the window the snap sits: it must fire when a snap's onset lies in the
positive region (40-160 ms before the window's end) and stay quiet for older or just-starting snaps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    sample_rate: int = 16000
    window_samples: int = 4000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 40
    f_min: float = 60.0
    f_max: float = 8000.0
    channels: tuple[int, ...] = (8, 16, 32, 64)
    kernel: int = 7
    time_steps: int = 2  # time positions kept by the final pooling (1 = the seed's global pool)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, raw: dict) -> "ModelConfig":
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        if "channels" in known:
            known["channels"] = tuple(int(c) for c in known["channels"])
        return cls(**known)

    def describe(self) -> str:
        return (f"log-mel ({self.n_mels} mels, n_fft {self.n_fft}, hop {self.hop_length}) + ConvNet "
                f"{'-'.join(str(c) for c in self.channels)} (Conv2d k{self.kernel} + GELU + BatchNorm), "
                f"frequency pooling to {self.time_steps} time steps, linear")


class ConvBlock(nn.Module):
    """The seed's block: Conv2d (kernel 7, stride 2) -> GELU -> BatchNorm, Kaiming init."""

    def __init__(self, inp: int, out: int, kernel: int = 7, stride: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(inp, out, kernel_size=kernel, stride=stride, padding=kernel // 2)
        self.act = nn.GELU()
        self.bn = nn.BatchNorm2d(out)
        nn.init.kaiming_normal_(self.conv.weight, a=0.1)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.act(self.conv(x)))


class LogMel(nn.Module):
    """torchaudio's MelSpectrogram + log. Scripted into the model file, where it runs on torch alone."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        import torchaudio  # training-time import only; the exported TorchScript does not need it

        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length,
            hop_length=cfg.hop_length, f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels,
            power=2.0, center=True, pad_mode="reflect", norm="slaney", mel_scale="slaney")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel(x) + 1e-8).unsqueeze(1)


class SnapNet(nn.Module):
    def __init__(self, cfg: ModelConfig = ModelConfig()):
        super().__init__()
        self.cfg = cfg
        self.frontend = LogMel(cfg)
        self.norm = nn.BatchNorm2d(1)  # learns the log-mel level, so the net sees ~unit-scale input
        blocks = []
        inp = 1
        for out in cfg.channels:
            blocks.append(ConvBlock(inp, out, cfg.kernel))
            inp = out
        self.conv = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d((1, cfg.time_steps))
        self.lin = nn.Linear(inp * cfg.time_steps, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, samples] -> [B, 1, n_mels, frames] log-mel."""
        return self.frontend(x)

    def logits(self, spec: torch.Tensor) -> torch.Tensor:
        """[B, 1, n_mels, frames] -> [B] logits."""
        h = self.conv(self.norm(spec))
        h = self.pool(h).flatten(1)
        return self.lin(h).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, samples] -> [B] logits (training); the exported module adds the sigmoid."""
        return self.logits(self.features(x))


class ExportedSnapNet(nn.Module):
    """What goes into the model file: waveforms in, probabilities out."""

    def __init__(self, net: SnapNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net.logits(self.net.features(x)))


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
