"""Which image-patch tile order a checkpoint was trained with, and who said so.

The graph always uses the current order (see :mod:`birefnet_edge.model.layers.patches`); a checkpoint
trained with the legacy order is converted at load time. The order is decided, first match wins, by:

1. the caller (``load_model(..., patch_order=...)``, ``--patch-order`` on the command line);
2. :data:`HUB_ORDERS`, the published hub repositories whose training date is known (also recognised
   in a Hugging Face cache path), and :data:`FILE_ORDERS`, the released file names;
3. the file's own metadata (``birefnet_edge.patch_order``, written by our distillation);
4. otherwise ``legacy``, the order of most published files, with a warning naming the flag.
"""

from __future__ import annotations

import logging
from pathlib import Path

from birefnet_edge.errors import InputError, WeightsError
from birefnet_edge.model.layers.patches import PATCH_ORDERS

log = logging.getLogger(__name__)

METADATA_KEY = "birefnet_edge.patch_order"
DEFAULT_ORDER = "legacy"
# Sources recorded in WeightsInfo.patch_order_source.
USER, HUB_TABLE, FILE_NAME, FILE_METADATA, DEFAULT, DETERMINISTIC = (
    "user",
    "hub table",
    "file name",
    "file metadata",
    "default",
    "deterministic",
)

# The tile order changed upstream on 2024-11-05 (commit 5198d3f2) without re-released weights:
# repositories published before it were trained with the legacy order, later ones with the current.
HUB_ORDERS = {
    "ZhengPeng7/BiRefNet": "legacy",
    "ZhengPeng7/BiRefNet_lite": "legacy",
    "ZhengPeng7/BiRefNet-portrait": "legacy",
    "ZhengPeng7/BiRefNet-matting": "legacy",
    "ZhengPeng7/BiRefNet_lite-2K": "legacy",
    "briaai/RMBG-2.0": "legacy",
    "ZhengPeng7/BiRefNet_HR": "current",
    "ZhengPeng7/BiRefNet_HR-matting": "current",
    "ZhengPeng7/BiRefNet_dynamic": "current",
}
# Release file names that identify one published checkpoint (exact match of the file name).
FILE_ORDERS = {
    "BiRefNet-general-epoch_244.pth": "legacy",
    "BiRefNet_dynamic-general-epoch_174.pth": "current",
}


def check_order(order: str, where: str) -> str:
    """Return ``order`` if it is a known tile order.

    Raises:
        InputError: Any other value (the message names ``where`` it came from).
    """
    if order not in PATCH_ORDERS:
        raise InputError(f"{where}={order!r} is not a tile order; choose one of: {', '.join(PATCH_ORDERS)}")
    return order


def decide_patch_order(
    user: str | None, hub_repo: str | None, path: Path | None, metadata: dict[str, str], spec: str
) -> tuple[str, str]:
    """Return ``(order, source)`` for a checkpoint, by the rules of the module docstring.

    Args:
        user: The caller's choice, or None.
        hub_repo: ``owner/name`` when the weights came from the hub or its cache (see ``hub.hub_repo_of_path``).
        path: The local weights file (its name is looked up), or None.
        metadata: The file's string metadata (empty for pickles).
        spec: The weights spec as given, for the warning.

    Raises:
        InputError: ``user`` is not a tile order.
        WeightsError: The file's metadata names an unknown tile order.
    """
    if user is not None:
        return check_order(user, "patch_order"), USER
    if hub_repo in HUB_ORDERS:
        return HUB_ORDERS[hub_repo], HUB_TABLE
    if path is not None and path.name in FILE_ORDERS:
        return FILE_ORDERS[path.name], FILE_NAME
    if METADATA_KEY in metadata:
        order = metadata[METADATA_KEY]
        if order not in PATCH_ORDERS:
            raise WeightsError(
                f"{spec}: metadata {METADATA_KEY}={order!r} is not a tile order ({', '.join(PATCH_ORDERS)}); "
                "pass --patch-order legacy|current to override it"
            )
        return order, FILE_METADATA
    log.warning(
        "%s: tile order not recorded; assuming legacy (most published checkpoints); "
        'pass --patch-order current (API: patch_order="current") if it was trained after 2024-11-05',
        spec,
    )
    return DEFAULT_ORDER, DEFAULT
