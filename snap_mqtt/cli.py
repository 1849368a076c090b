"""`snap-mqtt`: one entry point, one module per subcommand.

Each subcommand module defines `add_arguments(parser)` and `run(args) -> int` and keeps heavy
imports inside `run`, so `snap-mqtt --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "listen": ("snap_mqtt.cmd_listen", "listen (microphone or --input FILE) and publish snaps to MQTT"),
    "detect": ("snap_mqtt.cmd_detect", "run audio files through the detector and print JSON lines"),
    "devices": ("snap_mqtt.cmd_devices", "list audio input devices"),
    "check": ("snap_mqtt.cmd_check", "validate config, model, broker and input, and say what is wrong"),
}


def build_parser() -> argparse.ArgumentParser:
    from snap_mqtt import __version__

    parser = argparse.ArgumentParser(prog="snap-mqtt", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"snap-mqtt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
