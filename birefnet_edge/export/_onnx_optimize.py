"""The ONNX graph optimization ``torch.onnx.export(optimize=True)`` runs, without its one pathological rule.

torch's exporter hands its graph to onnxscript's optimizer (constant folding, 46 rewrite rules, dead
code removal, initializer deduplication, CSE) and then onnxscript's ONNX fusions. One of those rules,
``SlicesSplit`` (two ``Slice`` nodes halving the last axis become one ``Split``), is a two-output
pattern, and its matcher tries node pairs across the whole graph: on the tiny BiRefNet's 8,353 raw
nodes it took 29 s of the optimizer's 36 s (Intel Xeon, 2 cores), and BiRefNet has no such pair, so
it never fires (the optimized graphs are node-for-node the same size and op mix with and without it;
tests/export/test_onnx_optimize.py checks the rule set and that the passes still fold and fuse).

onnxscript has no argument to leave a rule out, so the same passes are run here with the rule list
minus that one rule. Where onnxscript no longer exposes its default rule list under the name read
below, the exporter's own optimizer runs unchanged (slower, same graph).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

# Rounds of fold -> rewrite -> prune, as onnxscript's optimizer runs them by default.
_ROUNDS = 2


def default_rules() -> tuple[Any, ...] | None:
    """onnxscript's default rewrite rules less ``SlicesSplit``; None when this onnxscript does not expose them."""
    from onnxscript import rewriter

    rules = getattr(rewriter, "_DEFAULT_REWRITE_RULES", None)
    try:
        from onnxscript.rewriter.rules.common import slice_split_rule
    except ImportError:
        return None
    if rules is None or slice_split_rule not in rules:
        return None
    return tuple(rule for rule in rules if rule is not slice_split_rule)


def optimize_graph(model: Any) -> Any:
    """Optimize an ``onnx_ir.Model`` in place as the dynamo exporter would, and return it."""
    import onnx_ir.passes.common as common
    from onnxscript import optimizer, rewriter
    from onnxscript.rewriter import onnx_fusions

    rules = default_rules()
    if rules is None:
        log.debug("onnxscript's default rewrite rules are not where expected; running its full optimizer")
        optimizer.optimize_ir(model)
        onnx_fusions.fuse(model)
        return model
    common.InlinePass()(model)
    rewrite = rewriter.RewritePass(rules)
    prune = (common.RemoveUnusedNodesPass(), common.RemoveUnusedFunctionsPass(), common.RemoveUnusedOpsetsPass())
    for _ in range(_ROUNDS):
        changed = optimizer.fold_constants_ir(model, onnx_shape_inference=True).modified
        changed |= rewrite(model).modified
        for step in prune:
            changed |= step(model).modified
        if not changed:
            break
    for step in (
        common.RemoveUnusedNodesPass(),
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common.LiftSubgraphInitializersToMainGraphPass(),
        common.DeduplicateInitializersPass(),
        common.CommonSubexpressionEliminationPass(),
        common.OutputFixPass(),
        common.NameFixPass(),
    ):
        step(model)
    onnx_fusions.fuse(model)
    return model
