"""`snap-mqtt detect`: run audio files through the listener's own pipeline as fast as possible.

Each file is read in blocks at its own rate and channel count and fed to a fresh SnapPipeline
(downmix, resample, detect, count), exactly as live audio would be. `--json` prints one line per
snap and gesture event: the MQTT payload plus "file". A file that cannot be read is reported on
stderr by name and skipped; the exit code is then 1. A bad model or config exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from snap_mqtt.settings import add_common_arguments

BLOCK_SECONDS = 10.0  # read size; any size gives the same events


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="audio files, or folders searched for "
                        ".wav/.flac/.ogg files")
    parser.add_argument("--json", action="store_true", help="one JSON object per event (the MQTT payload + file)")
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from snap_mqtt.audio_io import AUDIO_SUFFIXES, AudioFileError
    from snap_mqtt.model_file import ModelFileError, load_model
    from snap_mqtt.settings import SettingsError, load_from_args

    try:
        settings = load_from_args(args)
    except SettingsError as exc:
        print(f"snap-mqtt detect: {exc}", file=sys.stderr)
        return 2
    try:
        model = load_model(settings.resolved_model_path())
    except ModelFileError as exc:
        print(f"snap-mqtt detect: {exc}", file=sys.stderr)
        return 2

    import torch

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    files, failed = _expand(args.paths, AUDIO_SUFFIXES)
    n_snaps = n_gestures = n_ok = 0
    for path in files:
        try:
            for event in detect_file(path, model, settings):
                _print_event(event, path, args.json)
                if hasattr(event, "count"):
                    n_gestures += 1
                else:
                    n_snaps += 1
            n_ok += 1
        except AudioFileError as exc:
            print(f"snap-mqtt detect: skipped {exc}", file=sys.stderr)
            failed.append(path)
        except BrokenPipeError:  # `detect ... | head`: the reader has gone, stop quietly
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's final flush quiet
            return 1
        sys.stdout.flush()
    print(f"snap-mqtt detect: {n_ok} file(s) processed, {n_snaps} snap(s), {n_gestures} gesture(s), "
          f"{len(failed)} failed", file=sys.stderr)
    return 1 if failed else 0


def _expand(paths: list[str], suffixes: tuple[str, ...]) -> tuple[list[Path], list[Path]]:
    """Files named, plus the audio files in named folders (recursively, sorted). A folder without
    audio files and a missing path count as failures."""
    files: list[Path] = []
    failed: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in suffixes)
            if not found:
                print(f"snap-mqtt detect: skipped {p}: folder holds no audio files ({', '.join(suffixes)})",
                      file=sys.stderr)
                failed.append(p)
            files.extend(found)
        elif not p.exists():
            print(f"snap-mqtt detect: skipped {p}: no such file or folder", file=sys.stderr)
            failed.append(p)
        else:
            files.append(p)
    return files, failed


def detect_file(path: Path, model: Any, settings: Any, block_seconds: float = BLOCK_SECONDS):
    """Yield the events of one file, reading it block by block (memory stays flat on long files).
    Raises AudioFileError naming the file if it is empty, corrupt, truncated or unsupported."""
    import numpy as np
    import soundfile as sf

    from snap_mqtt.audio_io import AudioFileError
    from snap_mqtt.pipeline import SnapPipeline

    try:
        if path.stat().st_size == 0:
            raise AudioFileError(f"{path}: empty file (0 bytes)")
        f = sf.SoundFile(str(path))
    except OSError as exc:  # permission denied, a folder, vanished meanwhile
        raise AudioFileError(f"{path}: cannot open ({exc.strerror or exc})") from None
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise AudioFileError(f"{path}: unreadable or unsupported audio ({exc})") from None
    with f:
        rate, channels = int(f.samplerate), int(f.channels)
        if not 1000 <= rate <= 768000:
            raise AudioFileError(f"{path}: implausible sample rate {rate} Hz")
        pipeline = SnapPipeline(model, settings, input_rate=rate, channels=channels)
        block = max(1, int(block_seconds * rate))
        total = 0
        while True:
            try:
                data = f.read(block, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
                raise AudioFileError(f"{path}: read error after {total / rate:.2f} s ({exc})") from None
            if len(data) == 0:
                break
            if not np.all(np.isfinite(data)):
                raise AudioFileError(f"{path}: audio contains NaN or infinite samples near {total / rate:.2f} s")
            total += len(data)
            yield from pipeline.process(data)
        if total == 0:
            raise AudioFileError(f"{path}: no audio samples (truncated or zero-length)")
        yield from pipeline.flush()


def _print_event(event: Any, path: Path, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**event.payload(), "file": str(path)}), flush=False)
    elif hasattr(event, "count"):
        print(f"{path}  {event.time:8.3f} s  {event.event_type:<12} count {event.count}  "
              f"confidence {event.confidence:.2f}")
    else:
        print(f"{path}  {event.time:8.3f} s  snap #{event.index}       "
              f"confidence {event.confidence:.2f}  (decided at {event.detected_at:.3f} s)")
