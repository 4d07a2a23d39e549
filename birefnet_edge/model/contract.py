"""The deployment contract: image -> model input, and logits -> mask / cutout.

The same constants (size, mean, std, output kind) are written into every exported artifact so an
app can reproduce the pre- and post-processing without this package.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from birefnet_edge.checks import MAX_SIDE  # one bound for predict, export, profiles and distill
from birefnet_edge.errors import InputError
from birefnet_edge.images import MEAN, STD
from birefnet_edge.model.birefnet import check_input_size

ImageLike = Image.Image | np.ndarray


def check_run_size(height: int, width: int, minimum: int = 32) -> None:
    """Raise :class:`InputError` unless (H, W) is a legal model size no larger than :data:`MAX_SIDE`.

    Args:
        height: Input height in pixels.
        width: Input width in pixels.
        minimum: The variant's smallest legal side (``BiRefNetConfig.min_side``).

    Raises:
        InputError: A side above :data:`MAX_SIDE`, not a multiple of 32, or below ``minimum``.
    """
    if max(height, width) > MAX_SIDE:
        raise InputError(
            f"input size {height}x{width} is too large: sides above {MAX_SIDE} px need far more memory than "
            f"a model run can get (memory grows with the pixel count); pick --size {MAX_SIDE} or less"
        )
    check_input_size(height, width, minimum)


@dataclass(frozen=True)
class Contract:
    """Pre/post-processing constants of a model or artifact.

    Attributes:
        size: (H, W) the model runs at; images are resized to it and masks back from it.
        mean: Per-channel RGB mean on the 0..1 scale.
        std: Per-channel RGB std on the 0..1 scale.
        input_name: Name of the artifact input (NCHW float32 normalised RGB).
        output_name: Name of the artifact output (pre-sigmoid logits, N x 1 x H x W).
    """

    size: tuple[int, int] = (1024, 1024)
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD
    input_name: str = "input"
    output_name: str = "logits"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, with the steps spelled out for app developers."""
        out = asdict(self)
        out.update(
            size=list(self.size),
            mean=list(self.mean),
            std=list(self.std),
            layout="NCHW",
            dtype="float32",
            preprocess="RGB, resize to size (bilinear), scale to 0..1, (x - mean) / std",
            output="logits (pre-sigmoid), shape (N, 1, H, W)",
            postprocess="sigmoid, resize to the original size (bilinear), * 255 -> uint8 mask",
        )
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Contract:
        """Rebuild from :meth:`to_dict` output (extra descriptive keys are ignored)."""
        return cls(
            size=tuple(data["size"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            input_name=data.get("input_name", "input"),
            output_name=data.get("output_name", "logits"),
        )


def load_image(path: str | Path) -> Image.Image:
    """Open an image file as it is displayed: fully decoded, EXIF orientation applied, 8-bit RGB.

    Decoding happens here (so a truncated file fails here, not later); a photo taken in portrait
    comes back in portrait, so its mask has the size and orientation the user sees.

    Raises:
        InputError: The file is missing, not a readable image, larger than Pillow's decompression-bomb
            limit, or in a mode that has no RGB meaning.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    try:
        with warnings.catch_warnings():
            # Pillow warns (a raw multi-line warning) between 89 and 179 MP and refuses above; a 108 MP phone
            # photo is a real input, so it is read quietly here, and the refusal above becomes one line below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                upright = ImageOps.exif_transpose(img)
                return to_rgb(upright if upright is not None else img)
    except Image.DecompressionBombError as exc:
        raise InputError(
            f"refusing {path}: {exc}; if the image is genuine, downscale it first "
            "(or raise PIL.Image.MAX_IMAGE_PIXELS in your own script)"
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from exc


# Modes whose samples are wider than 8 bits, with the value that maps to white.
_WIDE_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535}


def _pil_to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode, scaling 16-bit and float samples instead of clipping them."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _WIDE_MODES:
        # Pillow's own convert clips 16-bit samples at 255, which turns a 16-bit PNG almost all white.
        # "I" is what Pillow gives for 16-bit PNGs and most 32-bit integer files: read it as 16-bit.
        arr = np.asarray(image, dtype=np.float64)
        return _gray_to_rgb(np.clip(arr, 0, _WIDE_MODES[mode]) * (255.0 / _WIDE_MODES[mode]))
    if mode == "F":
        arr = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        return _gray_to_rgb(arr * 255.0 if arr.size and arr.max() <= 1.0 else arr)
    if mode in ("P", "PA"):
        return image.convert("RGBA").convert("RGB")  # palette transparency is dropped, not blackened
    try:
        return image.convert("RGB")  # L, LA, 1, RGBA, RGBX, CMYK, YCbCr, ...
    except (ValueError, OSError) as exc:
        raise InputError(f"images in mode {mode} cannot be converted to RGB ({exc}); save the image as RGB") from exc


def _gray_to_rgb(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L").convert("RGB")


def to_rgb(image: ImageLike) -> Image.Image:
    """Return an 8-bit RGB PIL image from a PIL image (any mode) or an HxW / HxWx3 / HxWx4 array.

    16-bit samples are scaled to 8 bits (not clipped); float samples are read as 0..1 when they
    all lie in it, else as 0..255.

    Raises:
        InputError: An array of another shape, or a PIL mode with no RGB meaning.
    """
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    arr = np.asarray(image)
    if arr.dtype == np.uint16:
        arr = arr / 257.0
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        return Image.fromarray(arr, "L").convert("RGB")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(arr[..., :3]), "RGB")
    raise InputError(f"expected an image array of shape HxW, HxWx3 or HxWx4; got {arr.shape}")


def image_size(image: ImageLike) -> tuple[int, int]:
    """(height, width) of a PIL image or array."""
    if isinstance(image, Image.Image):
        return image.height, image.width
    return int(np.asarray(image).shape[0]), int(np.asarray(image).shape[1])


def preprocess(images: ImageLike | Sequence[ImageLike], contract: Contract) -> np.ndarray:
    """Images -> normalised float32 batch (B, 3, H, W) at the contract size.

    Args:
        images: One image or a sequence (PIL in any mode, or numpy arrays).
        contract: Size and normalisation constants.

    Returns:
        The batch, C-contiguous float32.
    """
    if isinstance(images, (Image.Image, np.ndarray)):
        images = [images]
    h, w = contract.size
    mean = np.asarray(contract.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(contract.std, dtype=np.float32)[:, None, None]
    batch = []
    for img in images:
        rgb = to_rgb(img).resize((w, h), Image.BILINEAR)
        chw = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)
        batch.append((chw - mean) / std)
    return np.ascontiguousarray(np.stack(batch), dtype=np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function in float32."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def postprocess(logits: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
    """One image's logits ((1, H, W) or (H, W)) -> uint8 mask at ``original_size`` (height, width)."""
    prob = sigmoid(np.asarray(logits, dtype=np.float32).reshape(logits.shape[-2:]))
    height, width = original_size
    resized = Image.fromarray(prob, mode="F").resize((width, height), Image.BILINEAR)
    return np.clip(np.rint(np.asarray(resized) * 255.0), 0, 255).astype(np.uint8)


def cutout(image: ImageLike, mask: np.ndarray) -> Image.Image:
    """RGBA cutout: the image's RGB with the mask as alpha (mask at the image's size)."""
    rgb = to_rgb(image)
    if mask.shape != (rgb.height, rgb.width):
        raise InputError(f"mask shape {mask.shape} does not match the image size {(rgb.height, rgb.width)}")
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(np.asarray(mask, dtype=np.uint8), "L"))
    return rgba
