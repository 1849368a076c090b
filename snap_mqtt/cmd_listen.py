"""`snap-mqtt listen`: hear snaps (microphone, or a replayed file) and publish them to MQTT."""

from __future__ import annotations

import argparse
import logging
import os
import sys

log = logging.getLogger("snap_mqtt.listen")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from snap_mqtt.settings import add_common_arguments

    parser.add_argument("--input", metavar="FILE",
                        help="replay this audio file instead of the microphone, through the same path")
    parser.add_argument("--speed", type=float, default=1.0, metavar="X",
                        help="with --input: replay X times faster than real time (0: as fast as possible)")
    parser.add_argument("--device", dest="audio.device", metavar="NAME|INDEX",
                        help="input device name (or part of it) or index (see `snap-mqtt devices`)")
    parser.add_argument("--capture-dir", dest="capture_dir", metavar="DIR",
                        help="opt-in: save the audio around each detection here (for `snap-train label`)")
    add_common_arguments(parser, mqtt=True)


def run(args: argparse.Namespace) -> int:
    from snap_mqtt.audio_io import AudioFileError
    from snap_mqtt.settings import SettingsError, load_from_args

    try:
        settings = load_from_args(args, extra_keys=("audio.device", "capture_dir"))
    except SettingsError as exc:
        print(f"snap-mqtt listen: {exc}", file=sys.stderr)
        return 2
    if args.speed < 0:
        print(f"snap-mqtt listen: error: --speed {args.speed}: must be >= 0", file=sys.stderr)
        return 2
    if args.speed != 1.0 and not args.input:
        print("snap-mqtt listen: error: --speed only applies with --input FILE", file=sys.stderr)
        return 2

    if settings.model_path is not None and not settings.model_path.is_file():
        # the same error load_model gives, without the seconds of importing torch first
        what = "model path is not a file" if settings.model_path.exists() else "model file not found"
        print(f"snap-mqtt listen: error: {settings.model_path}: {what}", file=sys.stderr)
        return 2

    import torch

    torch.set_num_threads(1)  # one snap window at a time: more threads only add overhead
    from snap_mqtt.listener import Listener
    from snap_mqtt.model_file import ModelFileError, load_model
    from snap_mqtt.mqtt_client import MqttConfigError

    try:
        model = load_model(settings.resolved_model_path())
        listener = Listener(settings, model, input_file=args.input, speed=args.speed)
    except (ModelFileError, AudioFileError, MqttConfigError, ValueError) as exc:
        print(f"snap-mqtt listen: error: {exc}", file=sys.stderr)
        return 2
    listener.install_signal_handlers()
    rc = listener.run()
    # Everything is published and flushed by now. Skip the interpreter's teardown of torch, which
    # takes seconds on a busy small box, so a stop (SIGTERM) completes within its 2 s budget.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
