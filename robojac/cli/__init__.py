"""The ``robojac`` command line: ``robojac demo``, and one subcommand per capability.

Exit codes: 0 success; 1 the command ran but did not converge; 2 bad input or arguments (a
one-line message); 3 a file could not be written or read by the system (permissions, a full
disk, a size limit); 4 any other failure (a short message, no traceback); 128 + N when stopped
by signal N (SIGINT, SIGTERM, SIGHUP), after removing any half-written file.
"""

from __future__ import annotations

import argparse
import signal
import sys

from . import _calibrate, _demo, _icp, _ik, _multiway, _odometry, _pgo, _register, _traj, _urdf

_COMMANDS = {"demo": _demo, "ik": _ik, "calibrate": _calibrate, "pgo": _pgo, "icp": _icp, "register": _register, "multiway": _multiway,
             "odometry": _odometry, "ape": _traj, "rpe": _traj, "urdf": _urdf}
EXIT_OK, EXIT_NOT_CONVERGED, EXIT_BAD_INPUT, EXIT_SYSTEM, EXIT_FAILURE = 0, 1, 2, 3, 4
_STOP_SIGNALS = tuple(getattr(signal, s) for s in ("SIGTERM", "SIGHUP") if hasattr(signal, s))


class _Stopped(BaseException):
    """A stop signal, raised where the program is so that half-written files are cleaned up."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stop(signum, frame):
    raise _Stopped(signum)


class _Parser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line, as every other bad input's (exit code 2),
    instead of the usage and then the error."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="robojac", description="Lie-group Jacobians for robot kinematics and pose estimation")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in dict.fromkeys(_COMMANDS.values()):  # a module may add several commands (ape and rpe)
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    name = f"robojac {args.command}"
    previous = {}
    try:
        for s in _STOP_SIGNALS:
            previous[s] = signal.signal(s, _raise_stop)
    except ValueError:  # not the main thread: signals stay as they are
        pass
    try:
        return int(_COMMANDS[args.command].run(args) or 0)
    except (ValueError, TypeError, OverflowError, FileNotFoundError, IsADirectoryError,
            NotADirectoryError) as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:
        print(f"{name}: error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}", file=sys.stderr)
        return EXIT_SYSTEM
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except _Stopped as e:
        print(f"{name}: stopped by signal {e.signum}", file=sys.stderr)
        return 128 + e.signum
    except Exception as e:  # noqa: BLE001 -- the CLI's promise: a short message and its own code
        print(f"{name}: failed: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
