"""The ``robojac`` command line: ``robojac demo``, and one subcommand per capability."""

from __future__ import annotations

import argparse
import sys

from . import _demo, _icp, _ik, _pgo

_COMMANDS = {"demo": _demo, "ik": _ik, "pgo": _pgo, "icp": _icp}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robojac", description="Lie-group Jacobians for robot kinematics and pose estimation")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in _COMMANDS.items():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(_COMMANDS[args.command].run(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"robojac {args.command}: error: {e}", file=sys.stderr)
        return 2
