"""`snap-mqtt`: one entry point, one module per subcommand.

Each subcommand module defines `add_arguments(parser)` and `run(args) -> int` and keeps heavy
imports inside `run`, so `snap-mqtt --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from snap_mqtt.subcommands import build_parser as build_parser_for
from snap_mqtt.subcommands import run_subcommand

COMMANDS: dict[str, tuple[str, str]] = {
    "listen": ("snap_mqtt.cmd_listen", "listen (microphone or --input FILE) and publish snaps to MQTT"),
    "detect": ("snap_mqtt.cmd_detect", "run audio files through the detector and print JSON lines"),
    "devices": ("snap_mqtt.cmd_devices", "list audio input devices"),
    "check": ("snap_mqtt.cmd_check", "validate config, model, broker and input, and say what is wrong"),
}


def build_parser() -> argparse.ArgumentParser:
    from snap_mqtt import __version__

    return build_parser_for("snap-mqtt", __doc__.splitlines()[0], __version__, COMMANDS)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_subcommand(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
