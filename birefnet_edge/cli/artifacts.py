"""``verify`` and ``pack``: check and archive artifact folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from birefnet_edge.cli._app import fail
from birefnet_edge.cli._options import ArtifactDirs


def verify_cmd(artifacts: ArtifactDirs) -> None:
    """Check every file of each artifact against its manifest's sha256; exit 1 naming each mismatch."""
    from birefnet_edge.pack import verify_artifact

    bad = []
    for folder in artifacts:
        problems = verify_artifact(folder)
        if problems:
            bad.append(folder)
            typer.secho(f"FAILED  {folder}: {'; '.join(problems)}", fg=typer.colors.RED, err=True)
        else:
            typer.secho(f"ok      {folder}", fg=typer.colors.GREEN)
    if bad:
        fail(f"{len(bad)} of {len(artifacts)} artifact(s) do not match their manifest: {', '.join(map(str, bad))}")


def pack_cmd(
    artifact: Annotated[Path, typer.Argument(metavar="ARTIFACT", help="Artifact folder to archive.")],
    out: Annotated[Path, typer.Option("--out", help="Archive to write, e.g. model.tar.gz.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out if it exists.")] = False,
) -> None:
    """Verify an artifact and write a reproducible .tar.gz of it (sorted entries, fixed times); print its sha256."""
    from birefnet_edge.pack import pack_artifact

    path, digest = pack_artifact(artifact, out, overwrite)
    typer.echo(f"{digest}  {path}")
