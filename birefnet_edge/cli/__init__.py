"""The ``birefnet-edge`` command line: export, parity, bench, predict, pipeline, distill, eval.

User errors (:class:`BirefnetEdgeError`) print one message and exit 1; ``--debug`` (before or after
the command name) shows the traceback. Heavy backends are imported inside the commands, so
``--help`` stays fast. Tables and progress bars go through ``rich`` on a terminal and are plain,
tab-separated text when piped (see :mod:`birefnet_edge.console`).

Each module holds one group of commands as plain functions; they are registered below, in the
order ``--help`` lists them.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import typer

from birefnet_edge.cli import artifacts, distill, evaluate, export, models, parity, predict
from birefnet_edge.cli._app import app

__all__ = ["app", "main"]

for _name, _command in (
    ("models", models.models_cmd),
    ("export", export.export_cmd),
    ("targets", export.targets_cmd),
    ("build-engine", export.build_engine_cmd),
    ("parity", parity.parity_cmd),
    ("bench", parity.bench_cmd),
    ("predict", predict.predict_cmd),
    ("verify", artifacts.verify_cmd),
    ("pack", artifacts.pack_cmd),
    ("report", parity.report_cmd),
    ("pipeline", parity.pipeline_cmd),
    ("distill", distill.distill_cmd),
    ("eval", evaluate.eval_cmd),
):
    app.command(_name)(_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning user errors into one-line messages.

    Exit codes: 0 success, 1 a user error or a failed gate, 2 a usage error (bad option or argument),
    130 interrupted (Ctrl-C), 143 terminated (SIGTERM; cleans up like Ctrl-C). User errors are printed by the
    command group (``_App``), which re-raises them with their traceback under ``--debug``.
    """
    args = sys.argv[1:] if argv is None else argv
    # A SIGTERM seen by an earlier main() in this process (tests, embedding apps) must not end this run.
    _Terminated.received = False
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal() works only there
    _Terminated.owner = os.getpid()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        code = app(args=args, standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _exit_interrupted()
    except Exception as exc:
        if _stopped_by_signal(exc):
            _exit_interrupted()
        if not _is_usage_error(exc):
            raise
        exc.show()  # type: ignore[attr-defined]  (click's usage line and one-line message)
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    # Without standalone mode a `raise typer.Exit(n)` inside a command is returned, not raised; typer
    # turns Ctrl-C (and so our SIGTERM exception) into a returned 130.
    if code == 130 or _Terminated.received:
        _exit_interrupted()
    sys.exit(code if isinstance(code, int) else 0)


def _exit_interrupted() -> None:
    """Say why the run stopped; exit 143 after SIGTERM, 130 after Ctrl-C (the shells' convention)."""
    typer.secho("terminated" if _Terminated.received else "interrupted", err=True)
    sys.exit(143 if _Terminated.received else 130)


class _Terminated(KeyboardInterrupt):
    """SIGTERM turned into an exception, so every ``with`` block and ``atexit`` cleanup runs as on Ctrl-C."""

    received = False
    owner = 0  # the process whose main() installed the handler


def _raise_terminated(signum: int, frame: object) -> None:
    if os.getpid() != _Terminated.owner:
        # A child forked by a library inherits the handler, and its parent may end it with SIGTERM as a
        # matter of course: OpenVINO's telemetry sender, terminated when it outlives its timeout (no network, a
        # loaded machine), printed "Process Process-21: Traceback ... _Terminated" into an OpenVINO export.
        # It dies as it would without us.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _Terminated.received = True
    raise _Terminated()


def _stopped_by_signal(exc: BaseException) -> bool:
    """True when ``exc`` was raised after a SIGTERM or while a Ctrl-C unwound the run.

    A signal sent to the whole process group also ends PyTorch's DataLoader workers, and the main process
    then reports them ("DataLoader worker ... is killed by signal") while our interrupt unwinds: seen as a
    traceback on SIGTERM during `distill`, where the run had stopped as asked.
    """
    context = exc.__context__
    while context is not None and not isinstance(context, KeyboardInterrupt):
        context = context.__context__  # Python breaks cycles when it sets a context, so this ends
    return _Terminated.received or context is not None


def _is_usage_error(exc: BaseException) -> bool:
    """True for click's usage errors (typer vendors its own click, so match by shape, not by class)."""
    return callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int)
