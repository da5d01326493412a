"""
The command line: ``python -m datapunk`` and the ``datapunk`` script.

A thin layer over the public API. Results go to files or stdout; logs go to
stderr (structlog, configured here and only here). Exit codes:

- ``0``: the command ran (a run with dead letters still exits 0);
- ``1``: the run failed or exceeded its error budget;
- ``2``: bad usage or configuration (missing file, bad spec, unknown runner).

Each subcommand is one ``_cmd_*`` function registered in :func:`build_parser`,
so new subcommands and flags slot in without touching the others.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
"""The command ran (dead letters included)."""
EXIT_FAILED = 1
"""The run failed or exceeded its error budget."""
EXIT_USAGE = 2
"""Bad usage or configuration."""

_LEVELS = ("debug", "info", "warning", "error", "critical")

_EPILOG = """\
examples:
  datapunk process examples/flights.csv -c examples/pipeline.toml \\
      -o out.jsonl --dead-letter rejects.jsonl
  datapunk process data.csv -o data.jsonl          # validate and convert by format
  datapunk check examples/pipeline.toml             # show the pipeline, run nothing
  datapunk plugins                                  # list installed plugins

exit codes: 0 ran (dead letters included), 1 run failed or error budget
exceeded, 2 bad usage or configuration.
"""


class _UsageError(Exception):
    """A mistake on the command line (exit code 2)."""


# ----------------------------------------------------------------- logging
@contextlib.contextmanager
def _logging(fmt: str, level: str, stream: TextIO) -> Iterator[None]:
    """Configure structlog to write *fmt* lines at *level* to *stream*; undo afterwards."""
    import structlog

    was_configured = structlog.is_configured()
    previous = structlog.get_config()
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(default=str)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    try:
        yield
    finally:
        if was_configured:
            structlog.configure(**previous)
        else:
            structlog.reset_defaults()


# ------------------------------------------------------------------ parser
def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show tracebacks for errors (and debug logs)",
    )
    parser.add_argument(
        "--log-format",
        choices=("console", "json"),
        default=default,
        help="log line format on stderr (default: console; env DATAPUNK_LOG_FORMAT)",
    )
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=_LEVELS,
        default=default,
        help="lowest level logged (default: warning; env DATAPUNK_LOG_LEVEL)",
    )


def _max_errors(text: str) -> float:
    try:
        return int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a count (e.g. 10) or a rate (e.g. 0.05)"
            ) from None
        return value


def _add_process(sub: Any) -> None:
    p = sub.add_parser(
        "process",
        help="run a pipeline over a file",
        description=(
            "Read INPUT, run the pipeline of CONFIG (or, without -c, just copy the "
            "records to OUTPUT in its format), write OUTPUT and the dead letters, "
            "and print the run report."
        ),
        epilog="examples:\n"
        "  datapunk process examples/flights.csv -c examples/pipeline.toml \\\n"
        "      -o out.jsonl --dead-letter rejects.jsonl\n"
        "  datapunk process in.csv -o out.jsonl --report-json report.json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", nargs="?", help="input file (default: the config's)")
    p.add_argument("-c", "--config", metavar="CONFIG", help="pipeline file (.toml, .yaml)")
    p.add_argument("-o", "--output", metavar="OUTPUT", help="output file (format by suffix)")
    p.add_argument("--dead-letter", metavar="PATH", help="where failed records go (.jsonl)")
    p.add_argument("--format", metavar="FMT", help="input format when the suffix is not enough")
    p.add_argument("--runner", metavar="NAME", help="serial, threads, processes, async ...")
    p.add_argument(
        "--max-errors",
        metavar="N",
        type=_max_errors,
        help="stop with exit code 1 past N failed records (or a rate, e.g. 0.05)",
    )
    p.add_argument("--chunk-size", metavar="N", type=int, help="records processed together")
    p.add_argument("--progress", action="store_true", default=None, help="show a progress bar")
    p.add_argument("--report-json", metavar="PATH", help="write the report as JSON to PATH")
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="record progress in this SQLite file, so a killed run can be resumed",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run recorded in the checkpoint "
        "(default checkpoint: OUTPUT.checkpoint.db); without it a run starts afresh",
    )
    _common(p, top=False)
    p.set_defaults(handler=_cmd_process)


def _add_replay(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="push the records of a dead-letter file through a (fixed) pipeline",
        description=(
            "Read the dead letters of DEAD_LETTER_FILE, run their original records "
            "through the pipeline of CONFIG, write the recovered records to OUTPUT and "
            "the records that fail again to --dead-letter, and say how many were recovered."
        ),
        epilog="example:\n"
        "  datapunk replay rejects.jsonl -c fixed.toml -o recovered.jsonl \\\n"
        "      --dead-letter still-failing.jsonl\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dead_letters", metavar="DEAD_LETTER_FILE", help="a dead-letter .jsonl file")
    p.add_argument("-c", "--config", metavar="CONFIG", required=True, help="pipeline file")
    p.add_argument("-o", "--output", metavar="OUTPUT", required=True, help="recovered records")
    p.add_argument(
        "--dead-letter",
        metavar="PATH",
        help="records that fail again (default: DEAD_LETTER_FILE's name + .still-failing.jsonl)",
    )
    p.add_argument("--runner", metavar="NAME", help="serial, threads, processes, async ...")
    p.add_argument("--report-json", metavar="PATH", help="write the report as JSON to PATH")
    _common(p, top=False)
    p.set_defaults(handler=_cmd_replay)


def _add_check(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="validate a pipeline file and show it, without running",
        epilog="example:\n  datapunk check examples/pipeline.toml\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG", help="pipeline file (.toml, .yaml)")
    _common(p, top=False)
    p.set_defaults(handler=_cmd_check)


def _add_plugins(sub: Any) -> None:
    p = sub.add_parser(
        "plugins",
        help="list installed plugins and where they come from",
        epilog="examples:\n  datapunk plugins\n  datapunk plugins --json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _common(p, top=False)
    p.set_defaults(handler=_cmd_plugins)


def _add_version(sub: Any) -> None:
    p = sub.add_parser(
        "version",
        help="print the version",
        epilog="example:\n  datapunk version\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p, top=False)
    p.set_defaults(handler=_cmd_version)


#: Subcommand registrars, in the order ``--help`` lists them.
SUBCOMMANDS: list[Callable[[Any], None]] = [
    _add_process,
    _add_replay,
    _add_check,
    _add_plugins,
    _add_version,
]


def build_parser() -> argparse.ArgumentParser:
    """
    Build the argument parser (every subcommand, each with ``--help``).

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="datapunk",
        description="Production-grade record pipelines: read, validate, transform, write.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(sub)
    return parser


# ---------------------------------------------------------------- commands
def _version() -> str:
    import datapunk

    return str(datapunk.__version__)


def _cmd_version(args: argparse.Namespace, out: TextIO) -> int:  # noqa: ARG001 - one signature for every command
    out.write(f"datapunk {_version()}\n")
    return EXIT_OK


def _cmd_plugins(args: argparse.Namespace, out: TextIO) -> int:
    from datapunk.plugins import registry

    infos = registry.plugins()
    if args.json:
        out.write(json.dumps([i.to_dict() for i in infos], indent=2) + "\n")
        return EXIT_OK
    if not infos:
        out.write("no plugins installed (entry-point group 'datapunk.plugins')\n")
        return EXIT_OK
    rows = [("name", "kind", "distribution", "version", "status")]
    for i in infos:
        status = "ok" if i.ok else f"BROKEN: {i.error}"
        rows.append((i.name, i.kind or "-", i.distribution or "-", i.version or "-", status))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    for r in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths, strict=True)))
        out.write(f"  {r[4]}\n")
    return EXIT_OK


def _cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    from datapunk.config import load

    _importable(args.config)
    pipeline, options = load(args.config)
    out.write(pipeline.describe() + "\n")
    for role in ("source", "sink", "dead_letter"):
        value = getattr(options, role)
        if value is not None:
            out.write(f"{role}: {value}\n")
    run = {k: v for k, v in options.run_kwargs().items() if k != "dead_letter"}
    out.write("run: " + " ".join(f"{k}={v!r}" for k, v in run.items()) + "\n")
    out.write("ok\n")
    return EXIT_OK


def _importable(config: str) -> None:
    """Let stage modules next to the spec import (here and in worker processes)."""
    from pathlib import Path

    base = str(Path(config).resolve().parent)
    if base not in sys.path:
        sys.path.insert(0, base)


def _default_pipeline() -> Any:
    """Without -c: pass records through unchanged (they are still read, checked and counted)."""
    import datapunk

    return datapunk.Pipeline(datapunk.Stage(_identity, name="copy"), name="copy")


def _identity(record: Any) -> Any:
    return record


def _cmd_process(args: argparse.Namespace, out: TextIO) -> int:
    import datapunk
    from datapunk._core.run import resolve_runner
    from datapunk.config import open_endpoint, run_options

    cli = {
        "runner": args.runner,
        "max_errors": args.max_errors,
        "chunk_size": args.chunk_size,
        "progress": args.progress,
    }
    if args.config:
        _importable(args.config)
        pipeline, options = datapunk.Pipeline.from_config(args.config, overrides=cli)
    else:
        pipeline, options = _default_pipeline(), run_options(cli=cli)
    if args.input is None and options.source is None:
        raise _UsageError("give an INPUT file (or a [source] in the configuration)")
    if args.output is None and options.sink is None:
        raise _UsageError("give an OUTPUT file with -o (or a [sink] in the configuration)")
    kwargs = options.run_kwargs()
    # Open everything before any record is read: a missing file, an unknown
    # format or a bad directory is a usage error, and nothing is written.
    try:
        if args.input is not None and args.format:
            source = datapunk.io.read(args.input, format=args.format)
        else:
            source = open_endpoint(options.source, "source", args.input)
        sink = open_endpoint(options.sink, "sink", args.output)
        kwargs["dead_letter"] = open_endpoint(options.dead_letter, "dead_letter", args.dead_letter)
        kwargs["runner"] = resolve_runner(kwargs["runner"])
    except (datapunk.SourceError, datapunk.SinkError) as exc:
        raise _UsageError(exc.message) from exc
    checkpoint = _checkpoint(args)
    if checkpoint is not None:
        kwargs["checkpoint"] = checkpoint
    try:
        report = pipeline.run(source, sink, **kwargs)
    except datapunk.ErrorBudgetExceeded as exc:
        _write_report(args, exc.report, out)
        raise
    _write_report(args, report, out)
    return EXIT_OK


def _checkpoint(args: argparse.Namespace) -> Any:
    """``--checkpoint PATH`` / ``--resume``: the store, fresh unless resuming."""
    path = args.checkpoint
    if path is None and args.resume:
        if args.output is None:
            raise _UsageError("--resume needs --checkpoint PATH (or -o OUTPUT to name it)")
        path = f"{args.output}.checkpoint.db"
    if path is None:
        return None
    from datapunk.state import SQLiteCheckpoint

    return SQLiteCheckpoint(path, fresh=not args.resume)


def _cmd_replay(args: argparse.Namespace, out: TextIO) -> int:
    import datapunk
    from datapunk._core.run import resolve_runner

    _importable(args.config)
    pipeline, options = datapunk.Pipeline.from_config(
        args.config, overrides={"runner": args.runner}
    )
    dead = args.dead_letter
    if dead is None:
        dead = args.dead_letters.removesuffix(".jsonl") + ".still-failing.jsonl"
    try:
        sink = datapunk.io.write(args.output)
        dead_sink = datapunk.io.write(dead)
        runner = resolve_runner(options.runner)
        datapunk.state.DeadLetterSource(args.dead_letters)  # fails now if unreadable
    except (datapunk.SourceError, datapunk.SinkError) as exc:
        raise _UsageError(exc.message) from exc
    result = datapunk.replay(
        args.dead_letters,
        pipeline,
        sink,
        dead_letter=dead_sink,
        runner=runner,
        chunk_size=options.chunk_size,
    )
    if args.report_json:
        from pathlib import Path

        Path(args.report_json).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        out.write(str(result) + "\n")
    if result.failed_again:
        sys.stderr.write(f"datapunk: {result.failed_again} record(s) failed again: see {dead}\n")
    return EXIT_OK


def _write_report(args: argparse.Namespace, report: Any, out: TextIO) -> None:
    if args.report_json:
        from pathlib import Path

        Path(args.report_json).write_text(report.to_json() + "\n", encoding="utf-8")
    else:
        out.write(str(report) + "\n")


# -------------------------------------------------------------------- main
def _setting(args: argparse.Namespace, name: str, default: str) -> str:
    value = getattr(args, name, None)
    if value:
        return str(value)
    return os.environ.get(f"DATAPUNK_{name.upper()}", default).lower()


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the command line.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 ok, 1 the run failed, 2 bad usage or configuration.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    if args.version:
        sys.stdout.write(f"datapunk {_version()}\n")
        return EXIT_OK
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    debug = bool(getattr(args, "debug", False))
    level = "debug" if debug else _setting(args, "log_level", "warning")
    fmt = _setting(args, "log_format", "console")
    if level not in _LEVELS or fmt not in {"console", "json"}:
        sys.stderr.write(
            f"datapunk: error: DATAPUNK_LOG_LEVEL / DATAPUNK_LOG_FORMAT invalid "
            f"({level!r}, {fmt!r}); levels: {', '.join(_LEVELS)}; formats: console, json\n"
        )
        return EXIT_USAGE
    with _logging(fmt, level, sys.stderr):
        return _dispatch(args, debug)


def _dispatch(args: argparse.Namespace, debug: bool) -> int:  # noqa: PLR0911 - one return per exit path
    import datapunk

    handler: Callable[[argparse.Namespace, TextIO], int] = args.handler
    code: int
    try:
        code = handler(args, sys.stdout)
    except _UsageError as exc:
        return _fail(f"{exc}", EXIT_USAGE, debug)
    except datapunk.ErrorBudgetExceeded as exc:
        return _fail(exc.message, EXIT_FAILED, debug)
    except datapunk.ConfigurationError as exc:
        # Raised before any record is processed: nothing was written.
        return _fail(exc.message, EXIT_USAGE, debug)
    except datapunk.DatapunkError as exc:
        return _fail(exc.message, EXIT_FAILED, debug)
    except KeyboardInterrupt:
        if getattr(args, "checkpoint", None) or getattr(args, "resume", False):
            return _fail(
                "interrupted; progress is saved in the checkpoint: run the same command "
                "with --resume to continue",
                130,
                debug,
            )
        return _fail("interrupted; outputs were not committed", 130, debug)
    except Exception as exc:
        return _fail(
            f"unexpected {type(exc).__name__}: {datapunk._core.types.safe_str(exc)} "
            "(run with --debug for the traceback)",
            EXIT_FAILED,
            debug,
        )
    return code


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc(file=sys.stderr)
    sys.stderr.write(f"datapunk: error: {message}\n")
    return code
