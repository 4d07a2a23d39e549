"""Marks of tests that export or run a real tiny artifact of a format (a uniquely named module, not a conftest).

pytest puts this folder on ``sys.path`` through the root conftest, so any test module can import it.
"""

from __future__ import annotations

import pytest

# Real exports of these formats take minutes even for the tiny model on 2 cores (ExecuTorch's lowering
# copies the whole graph once per delegate partition; LiteRT converts twice when the symbolic batch
# fails), so their tests run under ``make test-slow``; what needs no real export stays in the default run.
SLOW_EXPORT_FORMATS = frozenset({"executorch", "litert"})


def format_marks(fmt: str) -> list[pytest.MarkDecorator]:
    """The marks of a test that exports or runs a real tiny ``fmt`` artifact: its format marker, and slow."""
    from birefnet_edge.formats import FORMAT_OPTIONS

    marker = FORMAT_OPTIONS.get(fmt).marker
    marks = [getattr(pytest.mark, marker)] if marker else []
    return marks + ([pytest.mark.slow] if fmt in SLOW_EXPORT_FORMATS else [])
