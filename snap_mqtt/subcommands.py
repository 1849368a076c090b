"""What `snap-mqtt` and `snap-train` share: a parser with one subcommand per module.

Each subcommand module defines `add_arguments(parser)` and `run(args) -> int` and keeps heavy
imports inside `run`, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging


def build_parser(prog: str, description: str, version: str,
                 commands: dict[str, tuple[str, str]]) -> argparse.ArgumentParser:
    """`commands`: subcommand -> (module, one-line help). The chosen module is `args._module`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"{prog} {version}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_) in commands.items():
        p = sub.add_parser(name, help=help_, description=help_)
        importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def run_subcommand(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(importlib.import_module(args._module).run(args) or 0)
