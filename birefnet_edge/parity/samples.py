"""Report samples: a few inputs with the reference and target masks and the error map, saved as ``.npz``.

The parity gate writes them (:func:`save_samples`); the HTML renderer reads them back.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from birefnet_edge import metrics as M
from birefnet_edge._io import atomic_write_bytes
from birefnet_edge.parity.inputs import ParityInputs


def save_samples(
    folder: Path, name: str, inputs: ParityInputs, reference: np.ndarray, target: np.ndarray, n: int
) -> Path:
    """Save what the HTML report draws for the first ``n`` inputs.

    Masks are stored as 8-bit probabilities; the error |p_target - p_reference| is computed here in
    float32 (an 8- or 16-bit copy of the probabilities would show its own rounding, ~5e-4 in float16,
    instead of an fp32 target's real error) and max-pooled to at most 256 pixels a side.
    """
    n = min(n, len(inputs))
    ref_p, tgt_p = M.sigmoid(reference[:n, 0]), M.sigmoid(target[:n, 0])
    error = np.abs(tgt_p - ref_p).astype(np.float32)
    payload = {
        "names": np.asarray(inputs.names[:n]),
        "images": inputs.resized(tuple(reference.shape[-2:]))[:n],  # type: ignore[arg-type]
        "reference": _to_uint8(ref_p),
        "target": _to_uint8(tgt_p),
        "error": np.stack([max_pool(e, 256) for e in error]),
        "error_max": error.reshape(n, -1).max(axis=1),
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **payload)
    return atomic_write_bytes(Path(folder) / f"{name}.npz", buffer.getvalue())


def _to_uint8(prob: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(prob * 255.0), 0, 255).astype(np.uint8)


def max_pool(error: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink a 2-D map to at most ``max_side`` pixels a side keeping block maxima (one bad pixel stays visible)."""
    factor = max(1, int(np.ceil(max(error.shape) / max_side)))
    h, w = (error.shape[0] // factor) * factor, (error.shape[1] // factor) * factor
    return error[:h, :w].reshape(h // factor, factor, w // factor, factor).max(axis=(1, 3))
