"""Target profile records: the validated :class:`Profile` and its :class:`BatchRange` and :class:`Tolerance`.

Kept apart from the TOML reading in :mod:`birefnet_edge.profile` (which re-exports these names, the path
every caller imports them by) so a record can be built and checked in code without the file rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from birefnet_edge.checks import MAX_SIDE
from birefnet_edge.errors import ProfileError
from birefnet_edge.formats import FORMAT_OPTIONS, FormatOptions
from birefnet_edge.formats._quantization import QuantizationOptions

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
SIMPLIFIERS = ("onnxslim", "onnxsim", "none")
DEFORM_FORMS = ("portable", "native", "gather", "gather_int")


@dataclass(frozen=True)
class BatchRange:
    """The dynamic batch axis: one min/opt/max triple feeds every backend's notion of it.

    ONNX gets a symbolic ``batch`` axis, OpenVINO the bounded dimension ``min..max``, CoreML a
    ``RangeDim(min, max, default=opt)`` and TensorRT an optimization profile with these three.
    """

    min: int = 1
    opt: int = 1
    max: int = 8

    def __post_init__(self) -> None:
        if not (1 <= self.min <= self.opt <= self.max):
            raise ProfileError(
                f"batch range must satisfy 1 <= min <= opt <= max; got min={self.min}, opt={self.opt}, max={self.max}"
            )

    def contains(self, batch: int) -> bool:
        """Return True when ``batch`` lies inside ``[min, max]``."""
        return self.min <= batch <= self.max

    def clamp(self, sizes: Iterable[int]) -> list[int]:
        """The one batch-range policy: each size moved into ``[min, max]``, duplicates dropped, sorted.

        Export checks, the parity gate and the benchmark all choose their batch sizes through it.
        """
        return sorted({min(max(b, self.min), self.max) for b in sizes})

    def clamp_note(self, sizes: Iterable[int], verb: str = "run") -> str:
        """What :meth:`clamp` changed, in one line for the console and the reports ("" when nothing moved)."""
        moved = sorted({b for b in sizes if not self.contains(b)})
        if not moved:
            return ""
        nearest = sorted({min(max(b, self.min), self.max) for b in moved})
        return (
            f"batch {', '.join(map(str, moved))} outside the batch range {self.min}..{self.max}: {verb} at batch "
            f"{', '.join(map(str, nearest))} instead"
        )

    def example(self) -> int:
        """Batch size to trace with: at least 2, because tracing at 1 lets exporters bake the batch in."""
        return min(max(2, self.opt), self.max) if self.max >= 2 else 1


@dataclass(frozen=True)
class Tolerance:
    """Parity thresholds against the PyTorch reference (logits are pre-sigmoid).

    Attributes:
        max_abs_logit: Largest allowed |target - reference| over all logits.
        rtol: Relative term added to ``max_abs_logit`` as ``rtol * |reference|`` per element.
        min_iou: Smallest allowed IoU of the 0.5-thresholded masks.
        max_mae: Largest allowed mean |prob_target - prob_reference|.
    """

    max_abs_logit: float = 1e-3
    rtol: float = 0.0
    min_iou: float = 0.999
    max_mae: float = 1e-3

    def __post_init__(self) -> None:
        for name in ("max_abs_logit", "rtol", "max_mae"):
            if getattr(self, name) < 0:
                raise ProfileError(f"tolerance.{name} must be >= 0; got {getattr(self, name)}")
        if not 0.0 <= self.min_iou <= 1.0:
            raise ProfileError(f"tolerance.min_iou must lie in [0, 1]; got {self.min_iou}")


@dataclass(frozen=True)
class Profile:
    """One export target, validated on construction.

    Attributes:
        name: Profile name, e.g. ``onnx-fp16`` (defaults to the file stem).
        format: A format registered in :data:`birefnet_edge.formats.FORMAT_OPTIONS`.
        precision: ``fp32``, ``fp16``, ``bf16`` or ``int8`` (weights/compute; I/O stays float32 unless options
            say so); each format's options class lists the precisions it can build.
        input_size: (H, W) of the artifact; both multiples of 32.
        batch: The min/opt/max batch range.
        deform: ``portable`` (grid_sample form), ``native`` (ONNX ``DeformConv``, opset >= 19), ``gather``
            (row gathers and ops XNNPACK takes: ExecuTorch, LiteRT) or ``gather_int`` (the same with integer
            sampling corners, exact under bf16/fp16 compute: OpenVINO bf16).
        deform_band: Largest sampled column block (elements per image) the banded forms build at once, i.e.
            how many row bands the exported graph splits each deformable conv into; None: the model's default
            (``birefnet_edge.model.layers.deform_conv.COLUMN_BUDGET``). Tuned per runtime by measurement.
        opset: ONNX opset for formats that go through ONNX.
        simplify: Run an ONNX simplifier (False is the same as ``simplifier = 'none'``).
        simplifier: ``onnxslim`` (default), ``onnxsim`` (the ``onnxsim`` extra) or ``none``.
        options: The format's options dataclass (a mapping of its ``[options]`` table is accepted
            and validated against it); read by that format's exporter and runner.
        tolerance: Parity thresholds.
        quantization: The ``[quantization]`` table of an int8 profile (None for every other precision).
        description: One line for listings.
        source: ``shipped`` for a profile shipped with the package, the file name (never its folder)
            for a user's TOML file, empty for a profile built in code.
        sha256: SHA-256 of the TOML file's bytes (empty for a profile built in code).
    """

    name: str
    format: str
    precision: str = "fp32"
    input_size: tuple[int, int] = (1024, 1024)
    batch: BatchRange = field(default_factory=BatchRange)
    deform: str = "portable"
    deform_band: int | None = None
    opset: int = 18
    simplify: bool = True
    simplifier: str = "onnxslim"
    options: FormatOptions | Mapping[str, Any] = field(default_factory=dict)
    tolerance: Tolerance = field(default_factory=Tolerance)
    quantization: QuantizationOptions | Mapping[str, Any] | None = None
    description: str = ""
    source: str = ""
    sha256: str = ""

    def __post_init__(self) -> None:
        _check_choice("format", self.format, tuple(FORMAT_OPTIONS.names()))
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("graph.deform", self.deform, DEFORM_FORMS)
        _check_choice("graph.simplifier", self.simplifier, SIMPLIFIERS)
        if self.simplifier == "none" or not self.simplify:  # one meaning, whichever key the file used
            object.__setattr__(self, "simplify", False)
            object.__setattr__(self, "simplifier", "none")
        size = self.input_size
        if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(_is_int(v) for v in size)):
            raise ProfileError(f"input.size must be two integers [H, W]; got {size!r}")
        h, w = size
        if max(h, w) > MAX_SIDE:
            raise ProfileError(
                f"input.size {h}x{w} is too large: sides above {MAX_SIDE} px need far more memory than an export "
                f"or a run can get; use {MAX_SIDE} or less (the limit predict and export --size enforce too)"
            )
        if h % 32 or w % 32 or h < 64 or w < 64:
            raise ProfileError(
                f"input.size must be two multiples of 32, each at least 64; got {h}x{w} "
                f"(nearest legal: {_nearest32(h)}x{_nearest32(w)})"
            )
        if self.deform_band is not None and (not _is_int(self.deform_band) or self.deform_band < 1):
            raise ProfileError(f"graph.deform_band must be a positive number of elements; got {self.deform_band!r}")
        if not 17 <= self.opset <= 23:
            raise ProfileError(f"graph.opset must lie in 17..23; got {self.opset}")
        if self.deform == "native" and self.opset < 19:
            raise ProfileError(f"graph.deform = 'native' needs opset >= 19 (ONNX DeformConv); got opset {self.opset}")
        options_cls = FORMAT_OPTIONS.get(self.format)
        if self.precision not in options_cls.precisions:
            raise ProfileError(
                f"profile '{self.name}': precision = {self.precision!r} is not supported by format "
                f"'{self.format}'; choose one of: {', '.join(options_cls.precisions)}"
            )
        options = options_cls.from_table(self.options, where=f"'{self.name}'")
        options.check_precision(self.precision, f"'{self.name}'")
        object.__setattr__(self, "options", options)
        object.__setattr__(self, "quantization", self._quantization())

    def _quantization(self) -> QuantizationOptions | None:
        """The validated ``[quantization]`` table: defaults for an int8 profile without one, None otherwise."""
        if self.precision != "int8":
            if self.quantization:
                raise ProfileError(
                    f"profile '{self.name}': a [quantization] table applies only to precision = 'int8' "
                    f"(this profile is {self.precision}); remove it or set precision = 'int8'"
                )
            return None
        return QuantizationOptions.from_table(self.quantization or {}, where=f"'{self.name}'")

    def with_overrides(self, **changes: Any) -> Profile:
        """Return a validated copy with some fields replaced (e.g. ``input_size=(64, 64)`` in tests)."""
        if "batch" in changes and isinstance(changes["batch"], Mapping):
            changes["batch"] = BatchRange(**changes["batch"])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (as written into manifests), readable by :meth:`from_dict`."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, FormatOptions):
                value = value.to_dict()
            elif value is None and f.name in ("quantization", "deform_band"):
                continue  # older readers (and manifests of float artifacts, or of the default band) never see it
            elif dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)  # type: ignore[arg-type]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """Rebuild a profile from :meth:`to_dict` output (e.g. read back from a manifest)."""
        data = dict(data)
        data["batch"] = BatchRange(**data.get("batch", {}))
        data["tolerance"] = Tolerance(**data.get("tolerance", {}))
        data["input_size"] = tuple(data.get("input_size", (1024, 1024)))
        return cls(**data)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ProfileError(f"{key} = {value!r} is not allowed; choose one of: {', '.join(allowed)}")


def _nearest32(n: int) -> int:
    return max(64, int(round(n / 32)) * 32)
