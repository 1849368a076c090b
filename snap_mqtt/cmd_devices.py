"""`snap-mqtt devices`: list audio input devices (index, name, channels, default rate)."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per device")


def run(args: argparse.Namespace) -> int:
    try:
        import sounddevice as sd

        from snap_mqtt.capture import input_devices

        devices = input_devices()
        default_in = sd.default.device[0]
    except (OSError, ImportError) as exc:  # PortAudio library missing
        print(f"snap-mqtt devices: error: cannot use the audio system ({exc}); "
              "install libportaudio2 (scripts/setup.sh)", file=sys.stderr)
        return 2
    except Exception as exc:  # sounddevice.PortAudioError
        print(f"snap-mqtt devices: error: PortAudio: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for d in devices:
            print(json.dumps({**d, "default": d["index"] == default_in}))
        return 0
    if not devices:
        print("no audio input devices found (a USB microphone? PulseAudio/PipeWire running?)")
        return 1
    for d in devices:
        mark = "*" if d["index"] == default_in else " "
        print(f"{mark} {d['index']:3d}  {d['name']}  ({d['hostapi']}, {d['max_input_channels']} ch, "
              f"{d['default_samplerate']:.0f} Hz)")
    print("* = default input. Use --device NAME|INDEX or SNAP_AUDIO__DEVICE.")
    return 0
