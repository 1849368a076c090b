"""Copy a few small real clips from ../shared/data into tests/fixtures/audio (attributed, GPL-3.0 /
CC-BY), and build the demo recording demo/demo-scene.flac with its ground truth.

Run once by a developer; the outputs are committed so tests pass without ../shared.
    .venv/bin/python scripts/make_fixtures.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from snap_mqtt.audio_io import read_audio
from snap_mqtt.onset import snap_onset
from trainer.splits import split_of

ROOT = Path(__file__).resolve().parent.parent


def pick(folder: Path, split: str, n: int, need_onset: bool) -> list[Path]:
    out = []
    for f in sorted(folder.glob("*.flac")):
        if split_of(f.name) != split:
            continue
        if need_onset:
            a = read_audio(f, 16000)
            o = snap_onset(a.samples, 16000)
            if o is None or o < 800:  # want the whole attack inside the clip
                continue
        out.append(f)
        if len(out) == n:
            break
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args()
    data: Path = args.data
    dst = ROOT / "tests" / "fixtures" / "audio"
    for sub in ("snap", "no_snap", "background"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    chosen = {
        "snap": pick(data / "snap", "train", 10, True) + pick(data / "snap", "test", 10, True),
        "no_snap": pick(data / "no_snap", "train", 10, False) + pick(data / "no_snap", "test", 10, False),
    }
    for sub, files in chosen.items():
        for f in files:
            shutil.copy2(f, dst / sub / f.name)
    # short background excerpts (16 kHz) from evaluation backgrounds
    bg = {
        "keyboard.flac": (data / "background/keyboard").glob("K3P__letters__a__*.flac"),
        "speech.flac": [data / "background/speech/198-209-0000.hq.flac"],
        "music.flac": [data / "background/music/Kevin_MacLeod_-_Vibe_Ace.hq.flac"],
        "dishes.flac": [data / "background/household/_background_noise___doing_the_dishes.flac"],
    }
    for name, srcs in bg.items():
        src = sorted(srcs)[0]
        a = read_audio(src, 16000)
        x = a.samples[: 8 * 16000]
        sf.write(dst / "background" / name, x, 16000, subtype="PCM_16")
        print(name, "<-", src.relative_to(data))
    make_demo(chosen["snap"][10:], dst / "background", ROOT / "demo")


def clean_snap(path: Path, rate: int = 16000) -> bool:
    """A clip whose onset can be trusted as ground truth: one clear transient (>= 20 dB over the
    clip's median envelope) and no other within 20 dB of it before its onset. Some upstream "snap"
    windows are mic overloads, or also hold the start of an earlier snap cut by the window's edge:
    pasted into a scene, that earlier sound is a real snap-like event the truth would not list."""
    from snap_mqtt.onset import envelope, find_onset

    x = read_audio(path, rate).samples
    o = find_onset(x, rate)
    if o is None or o.prominence_db < 20:
        return False
    before = envelope(x, rate)[: max(o.index - rate // 200, 1)].max()
    return before <= o.peak * 0.1


def make_demo(snaps: list[Path], bg_dir: Path, out_dir: Path, rate: int = 16000) -> None:
    """A 22 s recording: speech, keyboard and music with a single, a double and a triple snap."""
    out_dir.mkdir(exist_ok=True)
    snaps = [f for f in snaps if clean_snap(f, rate)]
    from trainer.scenes import faded, join

    bed = join([read_audio(bg_dir / n, rate).samples for n in ("speech.flac", "keyboard.flac", "music.flac")], rate)
    bed = bed[: 24 * rate] * 0.5
    times = [2.0, 8.0, 8.35, 15.0, 15.3, 15.65]
    gestures = [(2.0, 1), (8.0, 2), (15.0, 3)]
    onsets = []
    for t, f in zip(times, snaps):
        clip = read_audio(f, rate).samples
        o = snap_onset(clip, rate)
        clip = faded(clip, rate)  # a clip pasted with hard edges adds clicks: transients of its own
        # and its own room tone ramps in over the part before the snap: pasted louder than the bed,
        # a 4 ms fade-in made it a 20 dB step 0.2 s before the snap, which a model may call a snap
        n_in = o - int(0.005 * rate)
        if n_in > 1:
            clip[:n_in] *= np.sin(np.linspace(0, np.pi / 2, n_in)) ** 2
        start = int(t * rate) - o
        bed[start:start + len(clip)] += clip
        onsets.append(round(t, 4))
    bed *= min(1.0, 0.95 / float(np.abs(bed).max()))  # no clipping: scale the whole mix down
    sf.write(out_dir / "demo-scene.flac", bed, rate, subtype="PCM_16")
    truth = {"sample_rate": rate, "seconds": len(bed) / rate, "snaps": onsets,
             "gestures": [{"time": t, "count": c} for t, c in gestures],
             "sources": [f.name for f in snaps[: len(times)]]}
    (out_dir / "demo-scene.json").write_text(json.dumps(truth, indent=2))
    print("demo:", truth)


if __name__ == "__main__":
    main()
