"""Batch sizes a user asks for, checked against each artifact's or profile's range before any slow work.

The gate leaves out a batch outside an artifact's range and notes it in the result; when the user named
that batch with ``--batch``, a PASS on the other batches would read as if it had been checked, so the
commands refuse it up front as a usage error instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from birefnet_edge.errors import BirefnetEdgeError, UsageError
from birefnet_edge.manifest import read_manifest
from birefnet_edge.profile import BatchRange


def check_batches(batches: Sequence[int], ranges: Mapping[str, BatchRange], option: str = "--batch") -> None:
    """Raise naming every (batch, target) pair where a requested batch lies outside the target's range.

    Args:
        batches: The batch sizes asked for.
        ranges: Target name -> its batch range.
        option: The option that named the batches (for the message).

    Raises:
        UsageError: One message listing each batch outside a range, with the range.
    """
    outside = [
        f"{batch} is outside {name}'s range {rng.min}..{rng.max}"
        for name, rng in ranges.items()
        for batch in batches
        if not rng.contains(batch)
    ]
    if outside:
        raise UsageError(
            f"{option}: {'; '.join(outside)}; pick batches inside every target's range (see `targets`), "
            "or run the targets separately"
        )


def artifact_batch_ranges(artifacts: Sequence[str | Path]) -> dict[str, BatchRange]:
    """Artifact folder name -> the batch range of its profile, for the artifacts whose manifest reads.

    An artifact whose manifest does not read is left out here: the gate reports it as unusable.
    """
    ranges = {}
    for folder in map(Path, artifacts):
        try:
            ranges[folder.name] = read_manifest(folder).get_profile().batch
        except BirefnetEdgeError:
            continue
    return ranges
