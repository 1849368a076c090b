"""Reading audio files into mono float32 at a wanted rate, with errors that name the file.

Audio is read with soundfile (libsndfile bundled): WAV (8/16/24/32-bit int, float), FLAC, OGG.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga")
MIN_RATE, MAX_RATE = 1000, 768000  # sample rates outside this are a corrupt header, not audio


from snap_mqtt.errors import AudioFileError  # noqa: E402  (re-exported: callers import it from here)


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # float32, mono, [-1, 1]
    sample_rate: int
    path: Path | None = None

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def to_mono(x: np.ndarray) -> np.ndarray:
    """[frames] or [frames, channels] -> [frames] float32 (mean of channels)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32)
    return x


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling of a whole signal (offline use; the listener streams its own)."""
    if rate_in == rate_out or len(x) == 0:
        return np.asarray(x, dtype=np.float32)
    from scipy.signal import resample_poly  # offline only: the listener streams through snap_mqtt.resample

    frac = Fraction(rate_out, rate_in).limit_denominator(1000)
    y = resample_poly(x, frac.numerator, frac.denominator)
    return y.astype(np.float32, copy=False)


def read_audio(path: str | os.PathLike[str], sample_rate: int | None = None,
               max_seconds: float | None = None) -> Audio:
    """Read `path` as mono float32, resampled to `sample_rate` if given.

    Raises AudioFileError for a missing, empty, corrupt, truncated or unsupported file, and
    for audio with no usable samples (non-finite values, zero length)."""
    p = Path(path)
    if not p.is_file():
        raise AudioFileError(f"{p}: no such audio file")
    if p.stat().st_size == 0:
        raise AudioFileError(f"{p}: empty file (0 bytes)")
    try:
        with sf.SoundFile(str(p)) as f:
            rate = int(f.samplerate)
            if not MIN_RATE <= rate <= MAX_RATE:
                # checked before reading: a header saying 1 Hz would make resampling to 16 kHz
                # blow a 64 KB file up into gigabytes
                raise AudioFileError(f"{p}: implausible sample rate {rate} Hz "
                                     f"(supported: {MIN_RATE}-{MAX_RATE} Hz)")
            # Read in blocks rather than f.read(f.frames): a corrupt header can claim billions of
            # frames, and a single read would try to allocate all of them up front.
            limit = int(max_seconds * rate) if max_seconds is not None else None
            parts, got = [], 0
            while limit is None or got < limit:
                want = 1 << 16 if limit is None else min(1 << 16, limit - got)
                block = f.read(frames=want, dtype="float32", always_2d=True)
                if len(block) == 0:  # real end of data, whatever the header claimed
                    break
                parts.append(block)
                got += len(block)
            data = np.concatenate(parts) if parts else np.zeros((0, max(1, f.channels)), np.float32)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise AudioFileError(f"{p}: unreadable or unsupported audio ({exc})") from None
    if rate <= 0:
        raise AudioFileError(f"{p}: invalid sample rate {rate}")
    x = to_mono(data)
    if len(x) == 0:
        raise AudioFileError(f"{p}: no audio samples (truncated or zero-length)")
    if not np.all(np.isfinite(x)):
        raise AudioFileError(f"{p}: audio contains NaN or infinite samples")
    if sample_rate is not None and sample_rate != rate:
        x = resample(x, rate, sample_rate)
        rate = sample_rate
    return Audio(samples=x, sample_rate=rate, path=p)


def is_silent(x: np.ndarray, floor_db: float = -80.0) -> bool:
    """True when the whole signal stays below `floor_db` dBFS peak (digital silence)."""
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    return peak <= 10 ** (floor_db / 20)


def audio_files(paths: list[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of audio files."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in AUDIO_SUFFIXES))
        else:
            out.append(p)
    return out


def write_audio_atomic(path: str | os.PathLike[str], x: np.ndarray, sample_rate: int,
                       subtype: str | None = None) -> Path:
    """Write a file under a temporary name, then rename: a crash or a full disk never leaves a
    truncated file under the final name."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.part")
    try:
        sf.write(str(tmp), x, sample_rate, subtype=subtype, format=_format_for(p))
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def _format_for(p: Path) -> str:
    return {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".oga": "OGG"}.get(p.suffix.lower(), "WAV")


def db(x: float) -> float:
    return 20 * math.log10(max(x, 1e-12))
