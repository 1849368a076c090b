"""`snap-train`: one entry point, one module per subcommand.

Each subcommand module defines `add_arguments(parser)` and `run(args) -> int`. Modules are imported
only when their subcommand runs, so `snap-train record` does not pay for importing Lightning.
"""

from __future__ import annotations

import argparse
import sys

from snap_mqtt.errors import AudioFileError, ModelFileError
from snap_mqtt.subcommands import build_parser as build_parser_for
from snap_mqtt.subcommands import run_subcommand

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "record": ("trainer.record", "record clips from a microphone (guided mode labels as it records)"),
    "label": ("trainer.label", "sort unlabelled clips into snap/ and no_snap/"),
    "train": ("trainer.train", "train a model on a data folder and export it"),
    "polish": ("trainer.polish", "fine-tune a model against where the listener fires on training negatives"),
    "scenes": ("trainer.scenes", "build evaluation scenes from held-out clips and backgrounds"),
    "lookalikes": ("trainer.drumkits", "build evaluation recordings of claps, knocks and another hand's snaps "
                                       "from Hydrogen drum kits"),
    "music": ("trainer.music", "build evaluation recordings of hours of real music (Debian's game-music packages)"),
    "evaluate": ("trainer.evaluate", "event-level evaluation of a model against scenes and negatives"),
    "enroll": ("trainer.enroll", "fine-tune a model on your own snaps and room"),
    "tune": ("trainer.tune", "choose a model's follow threshold on validation scenes"),
    "soup": ("trainer.soup", "average the weights of fine-tunes of one model"),
}


class UsageError(Exception):
    """Bad input the user can fix (missing folder, empty class...): printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    from trainer import __version__

    return build_parser_for("snap-train", __doc__.splitlines()[0], __version__, COMMANDS)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_subcommand(args)
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
