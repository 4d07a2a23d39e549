"""Accuracy against ground truth: any weights or artifacts on a labelled folder (the ``eval`` command).

:mod:`.scores` accumulates the measures the BiRefNet paper reports (S-measure, max/mean F-measure,
E-measure, weighted F-measure, MAE; the metric functions live in ``birefnet_edge.metrics``),
:mod:`.run` runs the models and judges the gates, :mod:`.report` renders the results.
"""

from birefnet_edge.evaluate.report import (
    load_eval_report,
    publish,
    render_junit,
    render_markdown,
    render_text,
    write_reports,
)
from birefnet_edge.evaluate.run import EvalReport, EvalResult, Gates, evaluate_model, evaluate_models, find_labelled
from birefnet_edge.evaluate.scores import MEASURES, Scores

__all__ = [
    "MEASURES",
    "EvalReport",
    "EvalResult",
    "Gates",
    "Scores",
    "evaluate_model",
    "evaluate_models",
    "find_labelled",
    "load_eval_report",
    "publish",
    "render_junit",
    "render_markdown",
    "render_text",
    "write_reports",
]
