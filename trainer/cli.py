"""`snap-train`: one entry point, one module per subcommand.

Each subcommand module defines `add_arguments(parser)` and `run(args) -> int`. Modules are imported
only when their subcommand runs, so `snap-train record` does not pay for importing Lightning.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from snap_mqtt.errors import AudioFileError, ModelFileError

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "record": ("trainer.record", "record clips from a microphone (guided mode labels as it records)"),
    "label": ("trainer.label", "sort unlabelled clips into snap/ and no_snap/"),
    "train": ("trainer.train", "train a model on a data folder and export it"),
    "scenes": ("trainer.scenes", "build evaluation scenes from held-out clips and backgrounds"),
    "evaluate": ("trainer.evaluate", "event-level evaluation of a model against scenes and negatives"),
    "enroll": ("trainer.enroll", "fine-tune a model on your own snaps and room"),
}


class UsageError(Exception):
    """Bad input the user can fix (missing folder, empty class...): printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    from trainer import __version__

    parser = argparse.ArgumentParser(prog="snap-train", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"snap-train {__version__}")
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
    except (UsageError, ModelFileError, AudioFileError, FileNotFoundError) as exc:
        print(f"snap-train {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"snap-train {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # `python -m trainer.cli`: run the package's copy of this module, so that UsageError raised by
    # subcommands (imported from trainer.cli) is the class caught above, not a __main__ twin.
    from trainer.cli import main as _main

    sys.exit(_main())
