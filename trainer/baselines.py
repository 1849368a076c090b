"""Two baselines, scored by the same metric code as our detector (trainer/evaluate.py).

1. The seed's approach, as its blog post describes it (../shared/docs/seed-blog-post.md): 2 s
   non-overlapping blocks at 44.1 kHz, a 64-mel spectrogram (n_fft 1024, hop 512, dB with
   top_db 80), four ConvBlocks (kernel 7, stride 2, GELU then BatchNorm: 8-16-32-64 channels),
   average pool, linear, sigmoid; augmentation: a time shift (roll by up to 20 %) and SpecAugment
   (3 frequency masks and 1 time mask of up to 7.5 %); Adam 1e-3, batch 8, early stopping after
   5 epochs without a better validation accuracy; "snap" when the confidence is >= 0.65.
   Trained on the same train-part data as our model: each 250 ms clip placed at a random offset
   in 2 s of train-part background. It says "a snap somewhere in these 2 s", so for event-level
   scoring its event is put at the block's middle; it cannot localise a snap nor count snaps in a
   block, which the event metrics show, and its block-level figures are reported beside them.

2. A classic transient detector, as hobby clap detectors do: the high-band (> 2 kHz) energy jumps
   by `jump_db` over its recent median and falls again by `decay_db` within 50 ms.

    python -m trainer.baselines train-seed --data ../shared/data --out runs/baselines/seed-baseline.pt
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SEED_RATE = 44100
SEED_BLOCK = 2 * SEED_RATE
SEED_THRESHOLD = 0.65


# ---------------------------------------------------------------------------------------------
# transient detector (pure numpy)

@dataclass(frozen=True)
class TransientParams:
    jump_db: float = 18.0  # high-band frame energy over the median of the last 0.5 s
    decay_db: float = 10.0  # ...and down again by this much 30-50 ms later (a short click, not speech)
    floor_dbfs: float = -65.0  # ignore frames quieter than this
    cutoff_hz: float = 2000.0
    frame_s: float = 0.005
    history_s: float = 0.5
    refractory_s: float = 0.15


def transient_onsets(x: np.ndarray, rate: int, p: TransientParams = TransientParams()) -> list[float]:
    """Onset times (s) of short high-band transients in `x`."""
    from scipy.signal import butter, sosfilt

    from snap_mqtt.onset import find_onset

    sos = butter(4, p.cutoff_hz, btype="highpass", fs=rate, output="sos")
    hp = sosfilt(sos, np.asarray(x, dtype=np.float64))
    f = max(1, int(p.frame_s * rate))
    n = len(hp) // f
    if n < 4:
        return []
    e = 10 * np.log10(np.mean(hp[: n * f].reshape(n, f) ** 2, axis=1) + 1e-12)
    h = max(2, int(p.history_s / p.frame_s))
    padded = np.concatenate([np.full(h, e[0]), e])
    base = np.median(np.lib.stride_tricks.sliding_window_view(padded, h)[:n], axis=1)  # frames k-h..k-1
    d0, d1 = int(0.030 / p.frame_s), int(0.050 / p.frame_s)
    out: list[float] = []
    last = -np.inf
    for k in np.flatnonzero((e - base >= p.jump_db) & (e >= p.floor_dbfs)):
        if k + d1 >= n:
            break
        peak = e[k:k + 3].max()
        if e[k + d0:k + d1 + 1].max() > peak - p.decay_db:
            continue
        a = max(0, k * f - f)
        o = find_onset(x[a:(k + 3) * f], rate)  # a slice: find_onset filters all it is given
        t = (a + o.index if o is not None else k * f) / rate
        if t - last >= p.refractory_s:
            out.append(t)
            last = t
    return out


# ---------------------------------------------------------------------------------------------
# the seed's model

def _seed_modules():
    import torch
    import torchaudio
    from torch import nn
    from torch.nn import init

    class ConvBlock(nn.Module):
        def __init__(self, inp: int, out: int, kernel: int = 7, padding: int = 2, stride: int = 2):
            super().__init__()
            self.conv1 = nn.Conv2d(inp, out, kernel_size=kernel, stride=stride, padding=padding)
            self.activation = nn.GELU()
            self.bn1 = nn.BatchNorm2d(out)
            init.kaiming_normal_(self.conv1.weight, a=0.1)
            self.conv1.bias.data.zero_()

        def forward(self, x):
            return self.bn1(self.activation(self.conv1(x)))

    class AudioClassifier(nn.Module):
        """The blog's ConvNet on [B, 1, 64, frames] dB mel spectrograms -> [B, 1]."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(ConvBlock(1, 8), ConvBlock(8, 16), ConvBlock(16, 32), ConvBlock(32, 64))
            self.ap = nn.AdaptiveAvgPool2d(output_size=1)
            self.lin = nn.Linear(in_features=64, out_features=1)
            self.sigmoid = nn.Sigmoid()

        def forward(self, x):
            x = self.ap(self.conv(x))
            return self.sigmoid(self.lin(x.view(x.shape[0], -1)))

    class FrontEnd(nn.Module):
        """Waveform [B, samples] at 44.1 kHz -> [B, 1, 64, frames] dB (top_db per example)."""

        def __init__(self):
            super().__init__()
            self.mel = torchaudio.transforms.MelSpectrogram(SEED_RATE, n_fft=1024, hop_length=None, n_mels=64)
            self.db = torchaudio.transforms.AmplitudeToDB(top_db=80.0)

        def forward(self, x):
            return self.db(self.mel(x).unsqueeze(1))

    class Exported(nn.Module):
        def __init__(self, front: nn.Module, net: nn.Module):
            super().__init__()
            self.front = front
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(self.front(x)).reshape(-1)

    return ConvBlock, AudioClassifier, FrontEnd, Exported


def _spectro_augment(spec, rng: np.random.Generator, max_mask_pct: float = 0.075, n_freq: int = 3, n_time: int = 1):
    """The blog's masks (torchaudio Frequency/TimeMasking with the mean as the fill), seeded."""
    spec = spec.clone()
    _, n_mels, n_steps = spec.shape
    fill = spec.mean()
    for size, axis, count in ((n_mels, 1, n_freq), (n_steps, 2, n_time)):
        for _ in range(count):
            w = int(rng.integers(0, int(max_mask_pct * size) + 1))
            a = int(rng.integers(0, size - w + 1))
            if axis == 1:
                spec[:, a:a + w, :] = fill
            else:
                spec[:, :, a:a + w] = fill
    return spec


class _Blocks:
    """2 s training blocks: a 250 ms clip at a random offset in 2 s of background."""

    def __init__(self, clips: list[np.ndarray], labels: list[int], beds: list[np.ndarray], rng: np.random.Generator):
        self.clips, self.labels, self.beds, self.rng = clips, labels, beds, rng

    def block(self, i: int) -> np.ndarray:
        rng = self.rng
        bed = self.beds[int(rng.integers(len(self.beds)))]
        a = int(rng.integers(0, len(bed) - SEED_BLOCK + 1))
        x = bed[a:a + SEED_BLOCK] * np.float32(10 ** (rng.uniform(-20, 0) / 20))
        clip = self.clips[i][:SEED_BLOCK]
        at = int(rng.integers(0, SEED_BLOCK - len(clip) + 1))
        x = x.copy()
        x[at:at + len(clip)] += clip
        # the blog's time_shift: roll by up to 20 % of the length
        return np.roll(x, int(rng.random() * 0.2 * SEED_BLOCK)).astype(np.float32)


def _load_split(data: Path, split: str) -> tuple[list[np.ndarray], list[int]]:
    from snap_mqtt.audio_io import audio_files, read_audio
    from trainer.splits import split_of

    clips, labels = [], []
    for label, sub in ((1, "snap"), (0, "no_snap")):
        for p in audio_files([data / sub]):
            if split_of(p.name) == split:
                clips.append(read_audio(p, SEED_RATE).samples)
                labels.append(label)
    return clips, labels


def _load_beds(data: Path, max_seconds: float = 30.0) -> list[np.ndarray]:
    from snap_mqtt.audio_io import audio_files, read_audio
    from trainer.splits import background_split

    beds = []
    root = data / "background"
    for p in audio_files([root]):
        if background_split(p.relative_to(root).as_posix()) != "train":
            continue
        x = read_audio(p, SEED_RATE, max_seconds=max_seconds).samples
        if len(x) >= SEED_BLOCK:
            beds.append(x)
    return beds


def train_seed(data: Path, out: Path, seed: int = 0, max_epochs: int = 30, patience: int = 5,
               beds: list[np.ndarray] | None = None) -> dict:
    """Train the seed's ConvNet as its blog does and save it as a snap-mqtt model file (TorchScript,
    window = hop = 2 s at 44.1 kHz, threshold 0.65). Returns what happened (epochs, accuracy, seconds)."""
    import torch

    from snap_mqtt.model_file import ModelMetadata, save_model
    from trainer import __version__
    from trainer.cli import UsageError

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t0 = time.monotonic()
    tr_clips, tr_labels = _load_split(data, "train")
    va_clips, va_labels = _load_split(data, "val")
    beds = beds if beds is not None else _load_beds(data)
    if not beds:
        raise UsageError(f"{data / 'background'}: no train-part background of at least 2 s for the seed baseline")
    if len(set(tr_labels)) < 2 or not va_labels:
        raise UsageError(f"{data}: the seed baseline needs train-part snap and no_snap clips and val-part clips")
    _, AudioClassifier, FrontEnd, Exported = _seed_modules()
    front, net = FrontEnd(), AudioClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    crit = torch.nn.BCELoss()
    train = _Blocks(tr_clips, tr_labels, beds, rng)
    # validation blocks drawn once, so that accuracy compares epochs on the same examples
    val = _Blocks(va_clips, va_labels, beds, np.random.default_rng(seed + 1))
    with torch.no_grad():
        val_x = torch.stack([front(torch.from_numpy(val.block(i))[None])[0] for i in range(len(va_clips))])
    val_y = torch.tensor(va_labels, dtype=torch.float32)
    best, best_state, bad, epochs = -1.0, None, 0, 0
    for epoch in range(max_epochs):
        net.train()
        order = rng.permutation(len(tr_clips))
        for b in range(0, len(order), 8):
            idx = order[b:b + 8]
            if len(idx) < 2:
                continue  # BatchNorm needs two examples
            with torch.no_grad():
                wav = torch.from_numpy(np.stack([train.block(int(i)) for i in idx]))
                spec = front(wav)
                spec = torch.stack([_spectro_augment(s, rng) for s in spec])
            y = torch.tensor([tr_labels[int(i)] for i in idx], dtype=torch.float32)[:, None]
            loss = crit(net(spec), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            acc = float(((net(val_x)[:, 0] >= 0.5).float() == val_y).float().mean())
        epochs = epoch + 1
        log.info("seed baseline epoch %d: val accuracy %.3f", epochs, acc)
        if acc > best:
            best, bad = acc, 0
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
            if bad >= patience:
                break
    net.load_state_dict(best_state)
    net.eval()
    scripted = torch.jit.script(Exported(front, net).eval())
    seconds = time.monotonic() - t0
    info = {"epochs": epochs, "val_accuracy": best, "train_seconds": round(seconds, 1),
            "train_clips": len(tr_clips), "val_clips": len(va_clips), "background_beds": len(beds)}
    meta = ModelMetadata(sample_rate=SEED_RATE, window_samples=SEED_BLOCK, hop_samples=SEED_BLOCK,
                         threshold=SEED_THRESHOLD, trainer_version=__version__, onset_min_samples=0,
                         onset_max_samples=SEED_BLOCK - 1, architecture="seed ConvNet (blog 2023), 2 s blocks",
                         data={"data": str(data), "split": "train (val for early stopping)"},
                         test_metrics={}, extra={"baseline": "seed", **info})
    save_model(scripted, meta, out)
    return info


# ---------------------------------------------------------------------------------------------
# running the seed the way it runs: non-overlapping 2 s blocks

def seed_block_probs(model, x44: np.ndarray, batch: int = 16) -> np.ndarray:
    """Probabilities of each whole 2 s block of a 44.1 kHz signal (a trailing part block is
    dropped, as the seed's recorder never hands one over)."""
    import torch

    n = len(x44) // SEED_BLOCK
    if n == 0:
        return np.zeros(0)
    blocks = x44[: n * SEED_BLOCK].reshape(n, SEED_BLOCK)
    out = []
    for i in range(0, n, batch):
        out.append(model.predict(torch.from_numpy(np.ascontiguousarray(blocks[i:i + batch]))).float().numpy())
    return np.concatenate(out)


# ---------------------------------------------------------------------------------------------
# CLI (python -m trainer.baselines train-seed ...)

def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(prog="python -m trainer.baselines", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train-seed", help="train the seed's ConvNet baseline")
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--max-epochs", type=int, default=30)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    if args.out.exists():
        print(f"{args.out} exists: not overwritten")
        return 2
    print(train_seed(args.data, args.out, seed=args.seed, max_epochs=args.max_epochs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
