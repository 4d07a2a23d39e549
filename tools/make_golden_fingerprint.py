"""Write tests/model/data/golden_fingerprint.json from the golden files in ../shared/birefnet.

The fingerprint (statistics plus logits sampled at fixed indices) lets the fidelity tests run on a
fresh clone without the golden npz files, which must never be committed.

Usage: python tools/make_golden_fingerprint.py [GOLDEN_DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

# file -> (variant, tile order the deterministic weights are read with, array holding the logits)
GOLDENS = {
    "golden_BiRefNet_lite_2x512.npz": ("BiRefNet_lite", "current", "logits"),
    "golden_BiRefNet_lite_1x512.npz": ("BiRefNet_lite", "current", "logits"),
    "golden_BiRefNet_lite_1x512_legacy_patch_order.npz": ("BiRefNet_lite", "legacy", "logits"),
    "golden_BiRefNet_lite_1x1024.npz": ("BiRefNet_lite", "current", "logits"),
    "golden_BiRefNet_pvt_v2_b0_2x512.npz": ("BiRefNet_pvt_v2_b0", "current", "logits"),
    "golden_BiRefNet_pvt_v2_b1_1x512.npz": ("BiRefNet_pvt_v2_b1", "current", "logits"),
    "trace_BiRefNet_1x256.npz": ("BiRefNet", "current", "final_logits"),
    "trace_BiRefNet_lite_1x256.npz": ("BiRefNet_lite", "current", "final_logits"),
}
SAMPLES = 2048


def fingerprint(path: Path, key: str) -> dict:
    data = np.load(path)
    logits = data[key].astype(np.float32)
    flat = logits.reshape(-1)
    idx = np.sort(np.random.default_rng(20261126).choice(flat.size, size=min(SAMPLES, flat.size), replace=False))
    return {
        "input_shape": list(data["input"].shape),
        "logits_shape": list(logits.shape),
        "mean": float(flat.mean(dtype=np.float64)),
        "std": float(flat.std(dtype=np.float64)),
        "min": float(flat.min()),
        "max": float(flat.max()),
        "indices": idx.tolist(),
        "values": [float(f"{v:.7g}") for v in flat[idx]],
    }


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "birefnet")
    out = {}
    for name, (variant, patch_order, key) in GOLDENS.items():
        entry = fingerprint(folder / name, key)
        entry.update(variant=variant, patch_order=patch_order)
        out[name] = entry
    target = Path(__file__).resolve().parents[1] / "tests" / "model" / "data" / "golden_fingerprint.json"
    target.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {target} ({target.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
