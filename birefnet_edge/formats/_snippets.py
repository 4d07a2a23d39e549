"""Pieces shared by the model card's usage snippets; each format's own snippets live on its options class.

A snippet is ``(title, language, template)``. Placeholders are ``string.Template`` names (``$model``,
``$engine``, ``$input``, ``$output``, ``$h``, ``$w``, ``$mean``, ``$std``, ``$js_external``,
``$swift_dtype``), so the braces of C++, JavaScript and Swift need no escaping; :mod:`birefnet_edge.card`
fills them in. Each snippet shows the platform's own API end to end: load, one normalised NCHW batch
in, logits out, sigmoid. Resizing the image to H x W and the mask back is left to the app's image library.
"""

from __future__ import annotations

from typing import NamedTuple


class Snippet(NamedTuple):
    """One usage example of the model card."""

    title: str
    language: str
    template: str


PY_PRE = """import numpy as np
from PIL import Image

image = Image.open("photo.jpg").convert("RGB")
x = np.asarray(image.resize(($w, $h), Image.BILINEAR), np.float32) / 255.0
x = ((x - np.array($mean, np.float32)) / np.array($std, np.float32)).transpose(2, 0, 1)[None]  # (1, 3, $h, $w)
"""

PY_POST = """mask = 1.0 / (1.0 + np.exp(-logits[0, 0]))                                   # sigmoid -> 0..1
Image.fromarray((mask * 255).astype(np.uint8)).resize(image.size, Image.BILINEAR).save("mask.png")
"""


def python_snippet(title: str, body: str) -> Snippet:
    """A Python snippet: the shared pre-processing, ``body`` (load and run, giving ``logits``), the shared mask."""
    return Snippet(title, "python", PY_PRE + "\n" + body + PY_POST)
