"""Target profiles: the declarative description of one export target.

A profile is a TOML file in ``targets/`` (or a user's own file) loaded into the frozen
:class:`Profile` dataclass and validated on load. Everything a target needs — format, precision,
input size, the min/opt/max batch range, graph choices, runtime options and parity tolerances —
lives here, so exporters, runners and the parity gate read the same numbers. The formats and
their ``[options]`` come from the registry in :mod:`birefnet_edge.formats`, not from a list here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from birefnet_edge.checks import MAX_SIDE
from birefnet_edge.errors import ProfileError
from birefnet_edge.formats import FORMAT_OPTIONS, FormatOptions
from birefnet_edge.formats._quantization import QuantizationOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
SIMPLIFIERS = ("onnxslim", "onnxsim", "none")
DEFORM_FORMS = ("portable", "native", "gather")
_TOP_KEYS = {
    "name",
    "format",
    "precision",
    "description",
    "input",
    "batch",
    "graph",
    "tolerance",
    "options",
    "quantization",
}


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
        deform: ``portable`` (grid_sample form), ``native`` (ONNX ``DeformConv``, opset >= 19) or ``gather``
            (row gathers and ops XNNPACK takes: ExecuTorch, LiteRT).
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
            elif value is None and f.name == "quantization":
                continue  # older readers (and manifests of float artifacts) never see the key
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


def targets_dir() -> Path:
    """Return the folder holding the shipped ``*.toml`` profiles (wheel or source checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "targets", here.parent / "targets"):
        if candidate.is_dir():
            return candidate
    raise ProfileError(f"no shipped targets folder found next to {here}; reinstall birefnet-edge")


def list_profiles() -> list[str]:
    """Return the names of the shipped profiles, sorted."""
    return sorted(p.stem for p in targets_dir().glob("*.toml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """Load and validate a profile by shipped name (``onnx-fp16``) or by path to a TOML file.

    Args:
        name_or_path: A shipped profile name or a path to a ``.toml`` file.

    Returns:
        The validated profile.

    Raises:
        ProfileError: Unknown name, unreadable file, bad TOML, unknown keys or invalid values.
    """
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        path = targets_dir() / f"{name_or_path}.toml"
        if not path.exists():
            raise ProfileError(
                f"unknown target profile '{name_or_path}'; shipped profiles: {', '.join(list_profiles())} "
                "(or pass a path to your own .toml file)"
            )
    if not path.is_file():
        raise ProfileError(f"profile file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"profile {path} is not valid TOML: {exc}") from exc
    shipped = path.resolve().parent == targets_dir().resolve()
    return profile_from_toml(
        data,
        default_name=path.stem,
        source="shipped" if shipped else path.name,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        where=str(path),
    )


def profile_from_toml(
    data: Mapping[str, Any], default_name: str, source: str = "", sha256: str = "", where: str = ""
) -> Profile:
    """Build a :class:`Profile` from parsed TOML tables, rejecting unknown keys.

    Args:
        data: The parsed TOML.
        default_name: The profile name when the file sets none (its stem).
        source: Recorded as :attr:`Profile.source`.
        sha256: Recorded as :attr:`Profile.sha256`.
        where: Names the file in error messages (defaults to ``default_name``).

    Raises:
        ProfileError: Unknown keys, missing ``format`` or invalid values (options included).
    """
    where = where or default_name
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ProfileError(
            f"unknown key(s) in profile {where}: {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_TOP_KEYS))}"
        )
    if "format" not in data:
        raise ProfileError(f"profile {where} has no 'format'; choose one of: {', '.join(FORMAT_OPTIONS.names())}")
    check_types(data, where)
    graph = _table(data, "graph", {"deform", "opset", "simplify", "simplifier"})
    inp = _table(data, "input", {"size"})
    size = inp.get("size", (1024, 1024))
    try:
        return Profile(
            name=str(data.get("name", default_name)),
            format=data["format"],
            precision=data.get("precision", "fp32"),
            input_size=(size, size) if isinstance(size, int) else tuple(size),  # type: ignore[arg-type]
            batch=BatchRange(**_table(data, "batch", {"min", "opt", "max"})),
            deform=graph.get("deform", "portable"),
            opset=graph.get("opset", 18),
            simplify=graph.get("simplify", True),
            simplifier=graph.get("simplifier", "onnxslim"),
            options=dict(data.get("options", {})),
            quantization=dict(data["quantization"]) if "quantization" in data else None,
            tolerance=Tolerance(**_table(data, "tolerance", {f.name for f in dataclasses.fields(Tolerance)})),
            description=data.get("description", ""),
            source=source,
            sha256=sha256,
        )
    except ProfileError as exc:  # raised by a table's own check (batch range, size): name the file too
        if str(exc).startswith("profile "):
            raise
        raise ProfileError(f"profile {where}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"profile {where}: {exc}") from exc


# The type of every key a profile TOML may hold outside [options] and [quantization] (their own dataclasses
# type those): checked before anything is built, so a wrong type is named with the field, not as a
# Python error from deep inside. "size" is one integer (a square) or a list of two, [H, W].
_SCHEMA: dict[str, tuple[type | str, str]] = {
    "name": (str, "a string"),
    "format": (str, "a string"),
    "precision": (str, "a string"),
    "description": (str, "a string"),
    "input": (dict, "a table"),
    "input.size": ("size", "an integer or a list of two integers [H, W]"),
    "batch": (dict, "a table"),
    "batch.min": (int, "an integer"),
    "batch.opt": (int, "an integer"),
    "batch.max": (int, "an integer"),
    "graph": (dict, "a table"),
    "graph.deform": (str, "a string"),
    "graph.opset": (int, "an integer"),
    "graph.simplify": (bool, "true or false"),
    "graph.simplifier": (str, "a string"),
    "tolerance": (dict, "a table"),
    **{f"tolerance.{f.name}": (float, "a number") for f in dataclasses.fields(Tolerance)},
    "options": (dict, "a table"),
    "quantization": (dict, "a table"),
}


def _type_ok(value: Any, kind: type | str) -> bool:
    if kind == "size":
        return _is_int(value) or (isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value))
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return _is_int(value)
    return isinstance(value, kind)  # type: ignore[arg-type]


def check_types(data: Mapping[str, Any], where: str) -> None:
    """Raise naming every field of a parsed profile whose value has the wrong type (unknown keys are left to
    the key checks, which list the allowed ones).

    Raises:
        ProfileError: One message listing each wrong field, its value and the type expected.
    """
    wrong = []
    for key, value in data.items():
        items = [(key, value)]
        if isinstance(value, Mapping) and key not in ("options", "quantization"):
            items += [(f"{key}.{sub}", v) for sub, v in value.items()]
        for dotted, item in items:
            expected = _SCHEMA.get(dotted)
            if expected is not None and not _type_ok(item, expected[0]):
                wrong.append(f"{dotted} = {item!r} must be {expected[1]}, not {_toml_type(item)}")
    if wrong:
        raise ProfileError(f"profile {where}: {'; '.join(wrong)}")


def _toml_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), type(value).__name__)


def _table(data: Mapping[str, Any], key: str, allowed: set[str]) -> dict[str, Any]:
    table = dict(data.get(key, {}))
    unknown = set(table) - allowed
    if unknown:
        raise ProfileError(
            f"unknown key(s) in [{key}]: {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}"
        )
    return table
