"""A one-line progress display for the ``distill`` command: step, loss, images/s, ETA, last agreement."""

from __future__ import annotations

import sys
from typing import Any, TextIO


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressPrinter:
    """Renders trainer records; rewrites one line on a terminal, prints plain lines otherwise.

    Args:
        total: Steps of the run.
        stream: Where to write (stderr by default).
    """

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total, self.stream = total, stream or sys.stderr
        self.tty = self.stream.isatty()
        self.agreement = ""

    def __call__(self, record: dict[str, Any]) -> None:
        if record["kind"] == "eval":
            mark = " (best)" if record.get("best") else ""
            parts = []
            if "iou" in record:
                parts.append(f"vs teacher IoU {record['iou']:.3f} S {record['s_measure']:.3f} MAE {record['mae']:.4f}")
            if "gt_iou" in record:
                gt = f"IoU {record['gt_iou']:.3f} S {record['gt_s_measure']:.3f} MAE {record['gt_mae']:.4f}"
                parts.append(f"vs ground truth {gt}")
            self.agreement = "; ".join(parts) + mark
            self._line(f"eval  step {record['step']}/{self.total}: held-out {self.agreement}", final=True)
            return
        line = (
            f"step {record['step']}/{self.total}  loss {record['loss']:.4g}  {record['images_per_s']:.2f} img/s  "
            f"ETA {_clock(record['eta_s'])}  lr {record['lr']:.2e}"
        )
        self._line(line, final=not self.tty)

    def _line(self, text: str, final: bool) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
