"""The ``birefnet-edge`` command line: export, parity, bench, predict, pipeline.

User errors (:class:`BirefnetEdgeError`) print one message and exit 1; ``--debug`` shows the
traceback. Heavy backends are imported inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from birefnet_edge.errors import BirefnetEdgeError

app = typer.Typer(
    name="birefnet-edge",
    help="Take BiRefNet from PyTorch to ONNX, OpenVINO, CoreML and TensorRT, prove parity, measure speed.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_STATE = {"debug": False}


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False,
) -> None:
    _STATE["debug"] = debug


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


# --- model commands (lead) -------------------------------------------------------------------


@app.command("models")
def models_cmd() -> None:
    """List the registered model variants."""
    from birefnet_edge.model import list_models

    for name in list_models():
        typer.echo(name)


# --- export commands (export engineer) --------------------------------------------------------


# --- runtime / parity / predict commands (runtime engineer) ------------------------------------


def main(argv: Optional[list[str]] = None) -> None:
    """Console-script entry point: run the app, turning user errors into one-line messages."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        app(args=args, standalone_mode=False)
    except BirefnetEdgeError as exc:
        if debug:
            raise
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.secho("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
