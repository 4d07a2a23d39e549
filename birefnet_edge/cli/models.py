"""``models``: the registered model variants."""

from __future__ import annotations

import typer


def models_cmd() -> None:
    """List the registered model variants."""
    from birefnet_edge.model import list_models

    for name in list_models():
        typer.echo(name)
