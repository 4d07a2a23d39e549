"""The typer app every command hangs on: the shared ``--debug`` flag and one-line user errors."""

from __future__ import annotations

import copy
import logging
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from birefnet_edge.errors import BirefnetEdgeError, UsageError

_DEBUG_HELP = "Show full tracebacks for errors."


def _set_debug(ctx: Any, _param: Any, value: bool) -> None:
    if value and not ctx.meta.get("debug"):
        ctx.meta["debug"] = True  # one dict shared by the root and every sub-command context
        _show_debug_records(ctx)


def _show_debug_records(ctx: Any) -> None:
    """Print the package's debug records on stderr until the command ends.

    A target that fails inside a multi-target command is recorded, not raised, so its converter's
    traceback reaches the user only as such a record (``export`` says "Run with --debug for the full
    traceback"). Info and above are left to the commands, which print them their own way.
    """
    logger = logging.getLogger("birefnet_edge")
    handler = logging.StreamHandler()  # stderr
    handler.addFilter(lambda record: record.levelno < logging.INFO)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

    def remove() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous)

    ctx.call_on_close(remove)


class _App(TyperGroup):
    """Gives every command a ``--debug`` flag and turns user errors into one line (a traceback with ``--debug``)."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        root_flag = next((p for p in self.params if p.name == "debug"), None)
        if command is not None and root_flag is not None and all(p.name != "debug" for p in command.params):
            flag = copy.copy(root_flag)  # the root's own --debug, not passed to the command's function
            flag.expose_value = False
            command.params.append(flag)
        return command

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BirefnetEdgeError as exc:
            if ctx.meta.get("debug"):
                raise
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2 if isinstance(exc, UsageError) else 1) from None  # the rule of docs/errors.md


app = typer.Typer(
    cls=_App,
    name="birefnet-edge",
    help="Take BiRefNet from PyTorch to ONNX, OpenVINO, CoreML and TensorRT, prove parity, measure speed.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain click help: the rich panels print a "<bool>" type beside every flag, which reads as if
    # "--overwrite true" were the way to pass it (the "true" then becomes an input path).
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from birefnet_edge import __version__

        typer.echo(f"birefnet-edge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", callback=_set_debug, help=_DEBUG_HELP)] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Take BiRefNet from PyTorch to ONNX, OpenVINO, CoreML and TensorRT, prove parity, measure speed."""


def fail(message: str, code: int = 1) -> None:
    """Print ``message`` as an error and exit with ``code``."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)
