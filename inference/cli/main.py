"""``python -m inference``: the command line. Each subcommand's ``--help`` documents every option.

Bad input ends with one line ``error: <file>: <problem>. Fix: <what to do>`` and exit code 2,
never a traceback from inside a library; a file that cannot be written (read-only folder, full
disk) too. Anything unexpected ends with one ``error:`` line and exit code 1; ``-v`` adds the
traceback.

One module per command group in :mod:`inference.cli`: ``predict``, ``synth``, ``score``, ``tune``, ``doctor``,
and ``tools`` (``fuse``, ``submit``, ``show``, ``demo-models``); each registers its parser and runs it. This
module holds the parser, logging and :func:`run_command` (one ``error:`` line, SIGTERM), shared with
``python -m export``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from inference.cli import doctor as cli_doctor
from inference.cli import predict as cli_predict
from inference.cli import score as cli_score
from inference.cli import synth as cli_synth
from inference.cli import tools as cli_tools
from inference.cli import tune as cli_tune
from inference.common.errors import EngineError, InputError, one_line, write_error
from inference.common.log_format import LineFormatter
from inference.common.names import escaped
from inference.version import __version__

logger = logging.getLogger("inference")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference",
        description="Offline 3D point detection in cryo-ET tomograms: BYU flagellar motors, and multi-class "
                    "particles (CZII; a manifest with task: particles).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in (cli_synth, cli_score, cli_predict, cli_tools, cli_tune, cli_doctor):
        group.add_cli(sub)
    return parser


def add_log_flags(parser: argparse.ArgumentParser) -> None:
    """``-v``/``-q`` on ``parser`` and on each of its subcommands (before or after the subcommand)."""
    targets = [(parser, False)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):  # SUPPRESS: absent after the subcommand keeps the top's
            targets += [(sub, argparse.SUPPRESS) for sub in action.choices.values()]
    for p, default in targets:
        if "--verbose" not in p._option_string_actions:
            p.add_argument("-v", "--verbose", action="store_true", default=default,
                           help="debug logging (per-tomogram lines)")
            p.add_argument("-q", "--quiet", action="store_true", default=default, help="warnings and errors only")


class _TqdmSafeHandler(logging.StreamHandler):
    """Writes log lines through ``tqdm.write`` (when tqdm is there) so they never break a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm
        except ImportError:
            return super().emit(record)
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise (logging.Handler.handleError's contract)
            self.handleError(record)


def configure_logging(level: int) -> None:
    """Log to stderr as ``LEVEL name: message`` (one line each, :mod:`inference.common.log_format`), through
    tqdm; per-tomogram lines are DEBUG (``-v``).

    Like ``logging.basicConfig``: nothing changes where logging is configured already (a test runner).
    """
    handler = _TqdmSafeHandler(sys.stderr)
    handler.setFormatter(LineFormatter())
    logging.basicConfig(level=level, handlers=[handler])


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None,
                errors: tuple[type[BaseException], ...] = (InputError, EngineError)) -> int:
    """Parse, set up logging, run the chosen subcommand; ``errors`` end as one ``error:`` line, exit 2.

    Shared by ``python -m inference`` and ``python -m export``.
    """
    add_log_flags(parser)
    args = parser.parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main else None
    try:
        return int(args.func(args) or 0)
    except errors as exc:
        logger.debug("the traceback", exc_info=exc)
        print(f"error: {escaped(exc)}", file=sys.stderr)
        return 2
    except Terminated:
        resume = "; what was done is saved: rerun the same command to resume" if args.func is cli_predict.run_cli else ""
        print(f"terminated (SIGTERM){resume}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user; the traceback with -v
        return report_unexpected(exc)
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def report_unexpected(exc: Exception) -> int:
    """One ``error:`` line for an exception no check foresaw (the traceback at DEBUG, ``-v``); the exit code:
    2 for an OSError naming its file (a full disk, a read-only folder), 1 otherwise."""
    logger.debug("the traceback", exc_info=exc)
    if isinstance(exc, OSError) and exc.filename and exc.errno is not None:
        where = exc.filename2 or exc.filename  # a copy names its destination second
        print(f"error: {escaped(write_error(where, exc, 'cannot read or write'))}", file=sys.stderr)
        return 2
    print(f"error: {escaped(one_line(exc))} (an unexpected error; -v shows the traceback)", file=sys.stderr)
    return 1


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop, ``kill``): unwinds like Ctrl-C, so the submission is written on the way out."""


def _terminate(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)
