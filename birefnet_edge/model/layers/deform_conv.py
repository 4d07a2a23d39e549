"""Modulated deformable convolution (DCNv2) without torchvision.

The official BiRefNet calls ``torchvision.ops.deform_conv2d`` (stride 1, dilation 1, one offset group,
groups 1, padding k//2). This module gives three interchangeable implementations of that op:

- :func:`deform_conv2d_reference`: a naive per-tap gather, for tests only;
- :func:`deform_conv2d_portable`: one ``F.grid_sample`` call for all k² taps plus one matmul. It exports
  to every format (ONNX GridSample / CoreML resample / OpenVINO GridSample) and is several times faster
  than torchvision's kernel on CPU;
- :func:`deform_conv2d_native`: a ``torch.library`` custom op whose eager body is the portable math and
  which the ONNX exporter translates to the single ``DeformConv`` node (see ``export/_deform_onnx.py``);
- :func:`deform_conv2d_gather`: the bilinear corners fetched by one row lookup (``embedding``) of channel rows and
  everything else (coordinates, tent weights, modulation, the conv as a matmul) as ops a CPU delegate such as
  XNNPACK takes, which has neither ``grid_sample`` nor any gather (ExecuTorch, LiteRT); only the row copy runs
  outside it;
- :func:`deform_conv2d_gather_int`: the same with integer corners, for runtimes that compute in bf16 or fp16
  (OpenVINO's bf16), where float sampling positions lose their fraction;
- :func:`deform_conv2d_torchvision`: ``torchvision.ops.deform_conv2d`` itself, when torchvision is installed
  (never a dependency): its CUDA kernel is several times faster than grid_sample there, so training uses it.

Offset layout (torchvision and ONNX ``DeformConv`` agree): channel ``2k`` is the row shift dy and
``2k + 1`` the column shift dx of tap ``k = i * kw + j``. Bilinear samples read zero outside the image.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from birefnet_edge.errors import InputError

DEFORM_FORMS: tuple[str, ...] = ("portable", "native", "gather", "gather_int", "torchvision")


def _float_range(n: int, like: Tensor) -> Tensor:
    """0..n-1 in like's dtype. An integer arange plus an explicit cast, because coremltools ignores
    arange's dtype argument and then rejects the division of what it made int32."""
    return torch.arange(n, device=like.device).to(like.dtype)


def _int_range(n: int, like: Tensor) -> Tensor:
    """0..n-1 as int64 on like's device."""
    return torch.arange(n, device=like.device)


def _tap_grid(offset: Tensor, kh: int, kw: int, padding: int, height: int, width: int) -> Tensor:
    """Sampling grid (B, k²·H, W, 2) in grid_sample's normalised (x, y) coordinates, tap-major rows."""
    taps = kh * kw
    off = offset.reshape(-1, taps, 2, height, width)
    tap_i = _float_range(kh, offset).repeat_interleave(kw) - padding
    tap_j = _float_range(kw, offset).repeat(kh) - padding
    rows, cols = _float_range(height, offset), _float_range(width, offset)
    # The sides as float tensors, not Python ints, so that traced graphs never divide by an int size.
    size_y, size_x = rows[-1:] + 1, cols[-1:] + 1
    # Pixel coordinates folded straight into the align_corners=False normalisation (2p + 1) / size - 1,
    # which stays finite when a side is 1 (the align_corners=True form divides by size - 1).
    base_y = (2 * (rows.view(1, 1, height, 1) + tap_i.view(1, taps, 1, 1)) + 1) / size_y - 1
    base_x = (2 * (cols.view(1, 1, 1, width) + tap_j.view(1, taps, 1, 1)) + 1) / size_x - 1
    grid_y = base_y + off[:, :, 0] * (2 / size_y)
    grid_x = base_x + off[:, :, 1] * (2 / size_x)
    return torch.stack((grid_x, grid_y), dim=-1).reshape(-1, taps * height, width, 2)


# Largest column matrix (elements per image) sampled at once; bigger maps are done in row bands. At 1024 px
# the decoder's 7x7 layer would otherwise hold 64·49 x 256² floats (822 MB) per image, three copies of it
# at times; 2**26 (256 MB) cuts that to four bands, which also runs 5-10% faster (fewer cache misses).
# The default; a profile may choose its own (``[graph] deform_band``), measured per runtime: OpenVINO's
# row gathers run 22% faster with 2**22 (see targets/openvino-bf16.toml), its grid_sample form 14% slower.
COLUMN_BUDGET = 1 << 26


def deform_conv2d_portable(
    x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, padding: int, band: int = COLUMN_BUDGET
) -> Tensor:
    """Modulated deformable convolution with stride 1 as grid_sample and matmul.

    All k² taps are sampled by a single ``grid_sample`` into a (B, C, k²·h, W) tensor, which is already
    the column layout (B, C·k², h·W) that a matmul with the (O, C·k²) weight needs, so nothing is
    transposed. Large maps are processed in bands of h rows (see :data:`COLUMN_BUDGET`); the band count
    depends only on static sizes, so exported graphs unroll it and keep their batch axis dynamic. No
    tensor exceeds rank 5 and no Python branch depends on the batch size.

    Args:
        x: Input (B, C, H, W).
        offset: Offsets (B, 2·kh·kw, H, W), dy then dx per tap.
        mask: Modulation (B, kh·kw, H, W).
        weight: Convolution weight (O, C, kh, kw).
        padding: Zero padding on every side; the output keeps H x W only when it is k // 2.
        band: Largest column matrix (elements per image) built at once; see :data:`COLUMN_BUDGET`.

    Returns:
        Output (B, O, H, W).
    """
    out_channels, channels, kh, kw = _static_shape(weight)
    height, width = _static_shape(x)[-2:]
    taps = kh * kw
    flat_weight = weight.reshape(out_channels, channels * taps)
    grid = _tap_grid(offset, kh, kw, padding, height, width)
    bands = _band_count(channels * taps * height * width, band)
    if bands <= 1:
        return _sample_and_combine(x, grid, mask, flat_weight, taps).reshape(-1, out_channels, height, width)
    rows = -(-height // bands)
    grid = grid.reshape(-1, taps, height, width, 2)
    outs = []
    for top in range(0, height, rows):
        strip = grid[:, :, top : top + rows].reshape(-1, taps * min(rows, height - top), width, 2)
        outs.append(_sample_and_combine(x, strip, mask[:, :, top : top + rows], flat_weight, taps))
    return torch.cat(outs, dim=2).reshape(-1, out_channels, height, width)


def _band_count(columns: int, band: int) -> int:
    if band < 1:
        raise InputError(f"the deformable conv's band budget must be a positive number of elements, got {band}")
    return -(-columns // band)


def _static_shape(t: Tensor) -> tuple[int, ...]:
    """The shape as Python ints, also under ``torch.jit.trace`` (some converters trace).

    Tracing records sizes as tensors and warns when one becomes a Python number. The band plan is meant
    to be a trace-time constant (an export's spatial size and weights are fixed; only the batch is
    dynamic, and it never enters the plan), so that warning would be noise here.
    """
    if not torch.jit.is_tracing():
        return tuple(t.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return tuple(int(n) for n in t.shape)


def _sample_and_combine(x: Tensor, grid: Tensor, mask: Tensor, flat_weight: Tensor, taps: int) -> Tensor:
    """(B, O, h·W) output for the rows whose tap grid (B, k²·h, W, 2) and mask (B, k², h, W) are given."""
    pixels = mask.shape[-2] * mask.shape[-1]
    cols = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    cols = cols.reshape(-1, x.shape[1], taps, pixels)
    mask = mask.reshape(-1, 1, taps, pixels)
    # In place saves allocating (and page-faulting) a second copy of the largest tensor, ~10-15% per layer
    # on CPU; autograd copes with it. TorchScript tracing (used by some converters) gets the plain form.
    cols = cols * mask if torch.jit.is_tracing() else cols.mul_(mask)
    # A bmm with the weight expanded to (B, O, K), not (O, K) @ (B, K, N): torch.export decomposes the 2-D form
    # into "transpose the columns, mm, transpose back", and OpenVINO then spends 3x the matmul's own time
    # transposing the largest tensor of the model. Nor the broadcasting (1, O, K) @ (B, K, N): with a symbolic
    # batch, its decomposition expands the columns to their own shape, which OpenVINO runs as a broadcast of
    # ones and a multiply over the whole column matrix (one 7x7 layer at 256x256: 954 against 737 ms, f32).
    # Expanding the small weight instead costs nothing. Eager speed is the same either way.
    cols = cols.reshape(-1, flat_weight.shape[1], pixels)
    return torch.bmm(flat_weight.unsqueeze(0).expand(cols.shape[0], -1, -1), cols)


def deform_conv2d_gather(
    x: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    padding: int,
    integer_corners: bool = False,
    band: int = COLUMN_BUDGET,
) -> Tensor:
    """Modulated deformable convolution with stride 1 as row lookups of channels-last rows and one matmul.

    The input is padded with one zero pixel and laid out channels-last, so each bilinear corner is one
    row of C values. Per output pixel and tap the top-left corner row is clamped to [-1, H-1] (and the
    column likewise), which keeps all four corners inside the padded map, and each corner's weight is
    the tent ``relu(1 - |p - corner|)`` of the unclamped sampling position: exactly the bilinear weight
    for a corner next to the position, and 0 for a corner that clamping moved away from it, so samples
    outside the image read zero as in the other forms. The columns come out as (B, H·W, k²·C), which
    a matmul with the (k²·C, O) weight turns into the output without transposing them. Maps whose
    columns pass :data:`COLUMN_BUDGET` are done in row bands (static, so exports unroll them).

    Args:
        integer_corners: Compute the corners as integers and only the offsets' fractions as floats (the
            ``gather_int`` form). Positions carried as floats (row + tap + offset) lose their fraction when a
            runtime computes them in bf16 or fp16 (bf16 steps by 2 at 256, fp16 by 0.5 at 1024): OpenVINO bf16
            sampled whole pixels off, IoU 0.89 for BiRefNet_lite at 512 px, 0.998 with integer corners. Float
            positions suit float32 delegates: XNNPACK has no integer arithmetic, and integer corners cut
            the share of the tiny model's LiteRT ops it runs from 74.5% to 65%.

    Other arguments and the result as in :func:`deform_conv2d_portable`.
    """
    out_channels, channels, kh, kw = _static_shape(weight)
    height, width = _static_shape(x)[-2:]
    taps = kh * kw
    rows = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1).reshape(-1, channels)  # (B·(H+2)·(W+2), C)
    # (O, C, kh, kw) -> (k²·C, O): tap-major, channel-minor, as the columns are laid out.
    flat_weight = weight.permute(2, 3, 1, 0).reshape(taps * channels, out_channels)
    bands = max(_band_count(channels * taps * height * width, band), 1)
    step = -(-height // bands)
    corners = _integer_corners if integer_corners else _float_corners
    # The sampling plan (corner rows and their weights) is tap-sized, C times smaller than the columns, so it is
    # made once for the whole map and each band slices it: a band then adds only its reads, weighted sum and
    # matmul to the graph (BiRefNet_lite's bf16 IR at 1024 px has 87 bands, each ~80 ops with its own plan).
    off = offset.reshape(-1, taps, 2, height, width).permute(0, 3, 4, 1, 2)
    base, ry, rx = corners(off, (kh, kw), padding, (height, width))
    weights = _corner_weights(ry, rx, mask.permute(0, 2, 3, 1))  # (B, H, W, k²) each
    if bands == 1:
        return _to_nchw(_gather_band(rows, base, weights, flat_weight, width), height, width, out_channels)
    outs = []
    for top in range(0, height, step):
        here = slice(top, top + step)
        band_base = base[:, here] if not outs else _after(base[:, here], outs[-1])
        band_out = _gather_band(rows, band_base, [w[:, here] for w in weights], flat_weight, width)
        # Each band is laid out as NCHW rows before the bands are joined. Joined as (B, band·W, O) matmul outputs,
        # litert-torch rewrote the bands' matmuls (same weight) as one FULLY_CONNECTED over a CONCATENATION of
        # every band's weighted sum, undoing the bands: BiRefNet_lite's decoder_block1 ASPP block at 512 px
        # held a 196 MB tensor, 16 MB now, and its LiteRT peak RSS went 1070 -> 776 MB (ops in order).
        outs.append(_to_nchw(band_out, min(step, height - top), width, out_channels))
    return torch.cat(outs, dim=2)


def _to_nchw(out: Tensor, height: int, width: int, channels: int) -> Tensor:
    """(B, H·W, O) matmul output as (B, O, H, W).

    The same values and strides as permute(0, 2, 1) then reshape, but a 4-D NHWC -> NCHW permute is a layout
    change OpenVINO runs as a fast reorder (2.9 ms for 128² x 256) where it runs the 3-D one on a slow generic
    transpose (17 ms): 14% of BiRefNet_lite's bf16 time at 1024 px.
    """
    return out.reshape(-1, height, width, channels).permute(0, 3, 1, 2)


def deform_conv2d_gather_int(
    x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, padding: int, band: int = COLUMN_BUDGET
) -> Tensor:
    """:func:`deform_conv2d_gather` with integer corners: exact when a runtime computes in bf16 or fp16."""
    return deform_conv2d_gather(x, offset, mask, weight, padding, integer_corners=True, band=band)


def _float_corners(
    off: Tensor, kernel: tuple[int, int], padding: int, size: tuple[int, int]
) -> tuple[Tensor, Tensor, Tensor]:
    """Top-left corner rows (B, H, W, k²) in the padded channels-last map, and the sampling position's
    row and column relative to that corner, from offsets (B, H, W, k², 2); all float."""
    kh, kw = kernel
    height, width = size
    taps = kh * kw
    tap_i = _float_range(kh, off).repeat_interleave(kw) - padding
    tap_j = _float_range(kw, off).repeat(kh) - padding
    py = _float_range(height, off).view(1, height, 1, 1) + tap_i.view(1, 1, 1, taps) + off[..., 0]
    px = _float_range(width, off).view(1, 1, width, 1) + tap_j.view(1, 1, 1, taps) + off[..., 1]
    y0 = torch.floor(py).clamp(-1, height - 1)
    x0 = torch.floor(px).clamp(-1, width - 1)
    return _corner_rows(y0, x0, size), py - y0, px - x0


def _integer_corners(
    off: Tensor, kernel: tuple[int, int], padding: int, size: tuple[int, int]
) -> tuple[Tensor, Tensor, Tensor]:
    """As :func:`_float_corners`, with int64 corners: only each offset's fraction in [0, 1) is a float."""
    kh, kw = kernel
    height, width = size
    taps = kh * kw
    floor_y, floor_x = torch.floor(off[..., 0]), torch.floor(off[..., 1])
    tap_i = _int_range(kh, off).repeat_interleave(kw) - padding
    tap_j = _int_range(kw, off).repeat(kh) - padding
    iy = _int_range(height, off).view(1, height, 1, 1) + tap_i.view(1, 1, 1, taps) + floor_y.to(torch.int64)
    ix = _int_range(width, off).view(1, 1, width, 1) + tap_j.view(1, 1, 1, taps) + floor_x.to(torch.int64)
    y0, x0 = iy.clamp(-1, height - 1), ix.clamp(-1, width - 1)
    # The whole pixels clamping moved the corner by (0 inside the map) plus the fraction.
    ry = (iy - y0).to(off.dtype) + (off[..., 0] - floor_y)
    rx = (ix - x0).to(off.dtype) + (off[..., 1] - floor_x)
    return _corner_rows(y0, x0, size), ry, rx


def _corner_rows(y0: Tensor, x0: Tensor, size: tuple[int, int]) -> Tensor:
    """Row of corner (y0, x0) of each image in the padded channels-last map, in the corners' dtype (a float32
    row number is exact far beyond any map we build; bf16 or fp16 ones are not, hence integer corners)."""
    height, width = size
    # The image index 0..B-1 as a cumulative sum over the batch, not an arange: an arange whose end is the
    # batch size makes some converters (litert-torch) fix the batch.
    image = torch.cumsum(torch.ones_like(y0[:, :1, :1, :1]), dim=0) - 1
    return image * ((height + 2) * (width + 2)) + (y0 + 1) * (width + 2) + (x0 + 1)


# The four bilinear corners as (rows down, columns right) of the top-left one.
_CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))


def _corner_weights(ry: Tensor, rx: Tensor, modulation: Tensor) -> list[Tensor]:
    """Each corner's weight: its tents at the position (ry, rx) relative to the top-left corner, times the
    modulation; (B, rows, W, k²) each, in :data:`_CORNERS` order."""
    wy = [torch.relu(1 - torch.abs(ry - dy)) * modulation for dy in (0, 1)]
    wx = [torch.relu(1 - torch.abs(rx - dx)) for dx in (0, 1)]
    return [wy[dy] * wx[dx] for dy, dx in _CORNERS]


def _gather_band(rows: Tensor, base: Tensor, weights: list[Tensor], flat_weight: Tensor, width: int) -> Tensor:
    """(B, band·W, O) output of one band: the four corners read from ``rows`` at ``base`` (+1 row, +1 column),
    weighted by ``weights`` (:func:`_corner_weights`), then one matmul."""
    pixels = base.shape[1] * base.shape[2]  # band·W
    taps, channels = base.shape[3], rows.shape[1]
    total = None
    for (dy, dx), weight in zip(_CORNERS, weights, strict=True):
        index = (base + (dy * (width + 2) + dx)).reshape(-1)
        index = index.to(torch.int64) if index.is_floating_point() else index
        # A row lookup (embedding) rather than index_select: the same rows and bytes everywhere, but
        # litert-torch lowers index_select to a GATHER_ND guarded by ten index ops (negative-index wrap,
        # bounds check) that also stay outside XNNPACK, and embedding to one EMBEDDING_LOOKUP: lite's largest
        # ASPPDeformable block at 512 px went from 1447 ops (43% in XNNPACK) to 767 (82%), 1692 -> 1416 ms.
        # OpenVINO and ExecuTorch run both alike (1078/1077 and 1427/1420 ms), AVX2 EPYC, 2 threads.
        corner = F.embedding(index, rows).reshape(-1, pixels, taps, channels)
        term = corner * weight.reshape(-1, pixels, taps, 1)
        total = term if total is None else total + term
    assert total is not None
    return torch.matmul(total.reshape(-1, pixels, taps * channels), flat_weight)


def _after(base: Tensor, previous: Tensor) -> Tensor:
    """``base`` unchanged, but computed from ``previous``: band k+1 reads its corners after band k is combined.

    Without this edge nothing orders one band's row reads after another band's arithmetic, and ExecuTorch's
    XNNPACK partitioner took the weighted sums and matmuls of every band into one delegate call, which needs
    every band's corner reads at once: BiRefNet_lite's program at 1024 px planned 4.1 GB, most of it the corner
    reads of the 7x7 convs, whatever the band size. LiteRT's interpreter regroups the same way unless told to
    keep the order, which its Java/Kotlin API cannot.

    The edge adds an exact zero made from one element of ``previous``: no float is greater than +inf (NaN and
    inf included), so the comparison is always false. An earlier ``(x != x) * 0`` was folded away by
    litert-torch, and its regrouped interpreter again read every band first; this comparison survives.
    """
    first = previous.reshape(-1)[:1]
    return base + (first > float("inf")).to(base.dtype)


def _bilinear_taps(x: Tensor, py: Tensor, px: Tensor) -> Tensor:
    """Bilinear samples of x (B, C, H, W) at pixel positions py, px (B, H, W); corners outside read zero."""
    batch, channels, height, width = x.shape
    y0, x0 = torch.floor(py), torch.floor(px)
    flat = x.reshape(batch, channels, height * width)
    total = torch.zeros(batch, channels, *py.shape[1:], dtype=x.dtype, device=x.device)
    for cy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for cx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            inside = (cy >= 0) & (cy <= height - 1) & (cx >= 0) & (cx <= width - 1)
            index = (cy.clamp(0, height - 1) * width + cx.clamp(0, width - 1)).long().reshape(batch, 1, -1)
            values = torch.gather(flat, 2, index.expand(batch, channels, -1)).reshape(total.shape)
            total = total + values * (wy * wx * inside).unsqueeze(1)
    return total


def deform_conv2d_reference(x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, padding: int) -> Tensor:
    """Naive modulated deformable convolution (stride 1), written for clarity; used by tests only.

    Loops over the kh·kw taps, gathers the four bilinear corners of every sample explicitly and
    accumulates ``W[:, :, i, j] @ (mask_k * sample_k)``. Works in any float dtype (use float64 in tests).

    Args:
        x: Input (B, C, H, W).
        offset: Offsets (B, 2·kh·kw, H, W), dy then dx per tap.
        mask: Modulation (B, kh·kw, H, W).
        weight: Convolution weight (O, C, kh, kw).
        padding: Zero padding on every side.

    Returns:
        Output (B, O, H, W).
    """
    batch, _, height, width = x.shape
    kh, kw = weight.shape[-2:]
    rows = torch.arange(height, dtype=x.dtype, device=x.device).view(1, height, 1)
    cols = torch.arange(width, dtype=x.dtype, device=x.device).view(1, 1, width)
    out = torch.zeros(batch, weight.shape[0], height, width, dtype=x.dtype, device=x.device)
    for i in range(kh):
        for j in range(kw):
            k = i * kw + j
            py = rows - padding + i + offset[:, 2 * k]
            px = cols - padding + j + offset[:, 2 * k + 1]
            sample = _bilinear_taps(x, py, px) * mask[:, k : k + 1]
            out = out + torch.einsum("oc,bchw->bohw", weight[:, :, i, j], sample)
    return out


@torch.library.custom_op("birefnet_edge::deform_conv2d", mutates_args=())
def _deform_conv2d_op(x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, padding: int) -> Tensor:
    return deform_conv2d_portable(x, offset, mask, weight, padding)


@_deform_conv2d_op.register_fake
def _deform_conv2d_fake(x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, padding: int) -> Tensor:
    return x.new_empty((x.shape[0], weight.shape[0], x.shape[2], x.shape[3]))


def deform_conv2d_native(x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, padding: int) -> Tensor:
    """Modulated deformable convolution as the custom op ``birefnet_edge::deform_conv2d``.

    Eager results equal :func:`deform_conv2d_portable`; ``torch.onnx.export(dynamo=True)`` with
    ``birefnet_edge.export._deform_onnx.deform_conv_translation_table()`` turns it into one ONNX
    ``DeformConv`` node. Arguments and result as in :func:`deform_conv2d_portable`.
    """
    return _deform_conv2d_op(x, offset, mask, weight, padding)


def torchvision_available() -> bool:
    """True when ``torchvision.ops.deform_conv2d`` imports (checked when the form is chosen, not per call)."""
    try:
        from torchvision.ops import deform_conv2d  # noqa: F401
    except (ImportError, RuntimeError):  # a torchvision built for another torch fails with RuntimeError
        return False
    return True


def deform_conv2d_torchvision(x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, padding: int) -> Tensor:
    """Modulated deformable convolution by ``torchvision.ops.deform_conv2d`` (same arguments and result).

    Only reached through :class:`DeformableConv2d` with form ``'torchvision'``, which checks the import.
    """
    from torchvision.ops import deform_conv2d

    return deform_conv2d(x, offset, weight, padding=(padding, padding), mask=mask)


# The forms that build their columns in row bands, and so take a band budget.
_BANDED = frozenset({"portable", "gather", "gather_int"})

_FORMS = {
    "portable": deform_conv2d_portable,
    "native": deform_conv2d_native,
    "gather": deform_conv2d_gather,
    "gather_int": deform_conv2d_gather_int,
    "torchvision": deform_conv2d_torchvision,
}


class DeformableConv2d(nn.Module):
    """DCNv2 block of BiRefNet's ASPPDeformable: offsets and mask predicted from the input itself.

    Key layout and zero-initialised offset/modulator convolutions follow the official module, so an
    untrained block acts as a plain convolution.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size; padding is ``kernel_size // 2`` so H x W is kept.
        form: ``"portable"`` (grid_sample; exports everywhere), ``"native"`` (ONNX ``DeformConv``),
            ``"gather"`` (row gathers and delegate-friendly ops), ``"gather_int"`` (the same with integer
            corners, for bf16/fp16 compute) or ``"torchvision"`` (torchvision's kernel).

    Raises:
        InputError: ``form`` is not one of :data:`DEFORM_FORMS`, or is 'torchvision' without torchvision.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, form: str = "portable") -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.padding = kernel_size // 2
        taps = kernel_size * kernel_size
        self.offset_conv = nn.Conv2d(in_channels, 2 * taps, kernel_size, padding=self.padding, bias=True)
        self.modulator_conv = nn.Conv2d(in_channels, taps, kernel_size, padding=self.padding, bias=True)
        self.regular_conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=self.padding, bias=False)
        for conv in (self.offset_conv, self.modulator_conv):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.form = form
        self.band = COLUMN_BUDGET

    @property
    def form(self) -> str:
        """Which implementation forward uses; may be switched at any time, weights are untouched."""
        return self._form

    @form.setter
    def form(self, value: str) -> None:
        if value not in _FORMS:
            raise InputError(
                f"unknown deformable-convolution form {value!r}; expected one of {list(DEFORM_FORMS)}. "
                "Use 'portable' for CoreML/OpenVINO/any ONNX runtime, 'native' for an ONNX DeformConv node, "
                "'gather' for delegates without grid_sample (ExecuTorch/LiteRT XNNPACK), 'gather_int' for "
                "bf16/fp16 compute (OpenVINO bf16), "
                "'torchvision' for torchvision's kernel (fast on CUDA; needs torchvision)."
            )
        if value == "torchvision" and not torchvision_available():
            raise InputError(
                "deformable-conv form 'torchvision' needs torchvision.ops (the build matching your torch), which "
                "does not import here; install it or use form 'portable'"
            )
        self._form = value

    def forward(self, x: Tensor) -> Tensor:
        offset = self.offset_conv(x)
        mask = 2.0 * torch.sigmoid(self.modulator_conv(x))
        fn, weight = _FORMS[self._form], self.regular_conv.weight
        if self._form in _BANDED:
            return fn(x, offset, mask, weight, self.padding, band=self.band)
        return fn(x, offset, mask, weight, self.padding)

    def extra_repr(self) -> str:
        band = f", band={self.band}" if self._form in _BANDED and self.band != COLUMN_BUDGET else ""
        return f"kernel_size={self.kernel_size}, form={self._form!r}{band}"
