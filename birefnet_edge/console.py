"""Terminal output: tables and progress through ``rich`` on a terminal, plain lines everywhere else.

On a terminal a table is drawn by ``rich``; piped or logged (not a TTY) it is tab-separated rows with a
header row, which ``cut``/``awk``/spreadsheets read as they are.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO


def is_terminal(stream: IO[str] | None = None) -> bool:
    """True when ``stream`` (default: stdout) is an interactive terminal."""
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, plain: bool, title: str = "") -> str:
    """Render a table: ``rich`` box drawing, or tab-separated lines (header first) when ``plain``.

    Args:
        headers: Column titles.
        rows: Cells as strings, one sequence per row.
        plain: Tab-separated output for pipes and logs.
        title: Shown above a ``rich`` table (ignored when plain).
    """
    if plain:
        return "\n".join("\t".join(str(c) for c in row) for row in [headers, *rows]) + "\n"
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, title=title or None, title_justify="left", header_style="bold")
    for row in rows:
        table.add_row(*(str(c) for c in row))
    buffer = io.StringIO()
    Console(file=buffer, width=max(_width(), 80), force_terminal=is_terminal(), highlight=False).print(table)
    return buffer.getvalue()


def _width() -> int:
    import shutil

    return shutil.get_terminal_size((160, 24)).columns


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, title: str = "") -> None:
    """Print a table to stdout (``rich`` on a terminal, tab-separated otherwise)."""
    sys.stdout.write(format_table(headers, rows, plain=not is_terminal(), title=title))
    sys.stdout.flush()


class Progress:
    """A progress bar on stderr when it is a terminal; otherwise nothing is drawn (messages still print).

    Args:
        total: Number of steps.
        label: What is being done.
    """

    def __init__(self, total: int, label: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        self.console = Console(stderr=True, highlight=False)
        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        )
        self._task = self._bar.add_task(label, total=total)

    def start(self, total: int, label: str) -> None:
        """Set the number of steps and the label once they are known (e.g. after the inputs were listed)."""
        self._bar.update(self._task, total=total, description=label)

    def advance(self, steps: int = 1, label: str | None = None) -> None:
        """Move the bar ``steps`` forward (and relabel it)."""
        self._bar.update(self._task, advance=steps, **({"description": label} if label else {}))

    def say(self, message: str, style: str | None = None) -> None:
        """Print one line on stderr above the bar (plain text, no markup parsing)."""
        self.console.print(message, style=style, markup=False, highlight=False, soft_wrap=True)

    @contextmanager
    def running(self) -> Iterator[Progress]:
        """Show the bar while the block runs."""
        with self._bar:
            yield self
