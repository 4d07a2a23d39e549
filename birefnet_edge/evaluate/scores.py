"""Accumulating the accuracy measures over a labelled set, image by image, as the standard evaluation does.

S-measure, weighted F-measure and MAE are averaged over images; the F- and E-measure curves (256
thresholds) are averaged over images first, then their maximum and mean are taken.
"""

from __future__ import annotations

import numpy as np

from birefnet_edge.metrics import (
    e_measure_curve,
    f_measure_curve,
    prepare_prediction,
    s_measure,
    weighted_f_measure,
)

# Reported measures, in report order, with their display names; higher is better except for MAE.
MEASURES = {
    "s_measure": "S-measure",
    "max_f": "max F",
    "mean_f": "mean F",
    "max_e": "max E",
    "mean_e": "mean E",
    "weighted_f": "weighted F",
    "mae": "MAE",
}
LOWER_IS_BETTER = ("mae",)


class Scores:
    """Running sums of every measure; :meth:`add` one image, :meth:`result` the set's figures."""

    def __init__(self) -> None:
        self.count = 0
        self._sums = {"s_measure": 0.0, "weighted_f": 0.0, "mae": 0.0}
        self._f = np.zeros(256)
        self._e = np.zeros(256)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Score one prediction.

        Args:
            pred: The predicted mask, uint8 (0..255), at the ground truth's size.
            gt: The ground-truth mask, uint8; foreground where > 128.
        """
        p, g = prepare_prediction(pred, gt)
        self._sums["s_measure"] += s_measure(p, g)
        self._sums["weighted_f"] += weighted_f_measure(p, g)
        self._sums["mae"] += float(np.mean(np.abs(p - g)))
        self._f += f_measure_curve(p, g)
        self._e += e_measure_curve(p, g)
        self.count += 1

    def result(self) -> dict[str, float]:
        """The measures of every image added so far (all NaN before the first)."""
        if not self.count:
            return dict.fromkeys(MEASURES, float("nan"))
        f, e = self._f / self.count, self._e / self.count
        out = {k: v / self.count for k, v in self._sums.items()}
        out.update(max_f=float(f.max()), mean_f=float(f.mean()), max_e=float(e.max()), mean_e=float(e.mean()))
        return {k: float(out[k]) for k in MEASURES}
