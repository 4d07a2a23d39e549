"""The options every format declares: a frozen dataclass per format, checked when a profile is loaded.

A format's options module declares its ``[options]`` table as a subclass of :class:`FormatOptions`
and registers it with ``@FORMAT_OPTIONS.register("<format>")``; that registration is what makes a
``format = "<name>"`` profile legal. Field types and defaults come from the dataclass, the allowed
values of a field from ``choice(...)``; the exporter and the runner of the format both read the same
object (``profile.options``), so no default is written twice.

The facts other code needs about a format (its main file, packages, extra, test marker, model-card
snippets) are class attributes of its options class, read through :data:`FORMAT_OPTIONS`; nothing
else lists the formats.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, TypeVar

from birefnet_edge._registry import Registry
from birefnet_edge.errors import ProfileError
from birefnet_edge.formats._snippets import Snippet

if typing.TYPE_CHECKING:
    from birefnet_edge.profile import Profile

OptionsT = TypeVar("OptionsT", bound="FormatOptions")

FORMAT_OPTIONS: Registry[type[FormatOptions]] = Registry("format")


def register(name: str):  # noqa: ANN201  (a class decorator; typed through the registry)
    """Register an options class as the ``[options]`` of format ``name`` (a duplicate name raises)."""

    def decorator(cls: type[OptionsT]) -> type[OptionsT]:
        cls.format = name
        if "extra" not in vars(cls):
            cls.extra = name
        return FORMAT_OPTIONS.register(name)(cls)  # type: ignore[return-value]

    return decorator


def choice(default: Any, allowed: tuple[Any, ...]) -> Any:
    """A dataclass field whose value must be one of ``allowed`` (listed in the error when it is not)."""
    return dataclasses.field(default=default, metadata={"allowed": allowed})


def within(default: Any, low: float, high: float) -> Any:
    """A dataclass field whose number must lie in ``low..high`` (the range is named in the error when it does not)."""
    return dataclasses.field(default=default, metadata={"range": (low, high)})


@dataclasses.dataclass(frozen=True)
class FormatOptions(Mapping[str, Any]):
    """Base of every format's options; read-only and also a mapping of field name -> value.

    The mapping view lets code written against the old ``profile.options`` dict keep working
    (``options.get("providers")``, ``dict(options)``); new code reads the attributes.
    """

    format: ClassVar[str] = ""
    #: Profile precisions this format can build (a profile asking for another is refused when loaded).
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16")
    #: How messages name the table these options come from.
    table: ClassVar[str] = "[options]"
    #: The artifact's main file (manifest role ``model``), e.g. ``model.onnx``.
    model_file: ClassVar[str] = ""
    #: Distributions (pip names) whose versions the run report records beside the format's results.
    packages: ClassVar[tuple[str, ...]] = ()
    #: (offset, bytes) every model file of the format holds, e.g. a FlatBuffers file identifier; checked
    #: before the backend loads the file, because some backends abort the process on a foreign file.
    model_magic: ClassVar[tuple[int, bytes] | None] = None
    #: The command that builds the model file on the machine that runs it (TensorRT: ``build-engine``); an
    #: artifact exported elsewhere holds only what that command builds from, and is complete without it.
    built_later_by: ClassVar[str] = ""
    #: The birefnet-edge extra that installs them (default: the format's name).
    extra: ClassVar[str] = ""
    #: pytest marker of the format's tests, registered by ``tests/conftest.py`` ("": none, always run).
    marker: ClassVar[str] = ""

    @classmethod
    def from_table(cls: type[OptionsT], table: Mapping[str, Any], where: str = "") -> OptionsT:
        """Build the options from a profile's ``[options]`` table, checking keys, types and allowed values.

        Args:
            table: The parsed TOML table (or a manifest's JSON dict).
            where: Names the profile in messages.

        Raises:
            ProfileError: An unknown key (the message lists the known ones), a wrong type or a value
                outside the allowed set (the message lists the allowed values).
        """
        if isinstance(table, cls):
            return table
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(table) - set(known))
        prefix = f"profile {where}: " if where else ""
        if unknown:
            raise ProfileError(
                f"{prefix}unknown key(s) in {cls.table}{cls._of_format()}: {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known)) or '(none)'}"
            )
        hints = typing.get_type_hints(cls)
        dotted = cls.table.strip("[]")
        values = {k: _coerce(f"{prefix}{dotted}.{k}", value, hints[k], known[k]) for k, value in table.items()}
        return cls(**values)

    def check_precision(self, precision: str, where: str) -> None:  # noqa: B027  (optional hook)
        """Refuse option values that contradict the profile's ``precision`` (default: nothing to check).

        Raises:
            ProfileError: The combination cannot be built or would not run as the profile says.
        """

    def snippets(self) -> tuple[Snippet, ...]:
        """Usage examples the model card shows for an artifact built with these options (default: none)."""
        return ()

    @classmethod
    def _of_format(cls) -> str:
        return f" for format '{cls.format}'" if cls.table == "[options]" else ""

    @classmethod
    def of(cls: type[OptionsT], profile: Profile) -> OptionsT:
        """Return ``profile.options`` typed as this format's options.

        Raises:
            ProfileError: The profile belongs to another format.
        """
        options = profile.options
        if not isinstance(options, cls):
            raise ProfileError(
                f"profile '{profile.name}' is a '{profile.format}' profile; it has no '{cls.format}' options"
            )
        return options

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (tuples become lists, as the manifest holds them)."""
        return json.loads(json.dumps({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}))

    def __getitem__(self, key: str) -> Any:
        if key not in {f.name for f in dataclasses.fields(self)}:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(f.name for f in dataclasses.fields(self))

    def __len__(self) -> int:
        return len(dataclasses.fields(self))


def _coerce(key: str, value: Any, hint: Any, f: dataclasses.Field) -> Any:
    """Check ``value`` against the field's type (TOML lists become tuples, ints may stand for floats)."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, item) for v in value):
            raise ProfileError(f"{key} = {value!r} must be a list of {item.__name__}")
        value = tuple(value)
    elif hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif not isinstance(value, hint) or (hint is not bool and isinstance(value, bool)):
        raise ProfileError(f"{key} = {value!r} must be a {hint.__name__}; got {type(value).__name__}")
    allowed = f.metadata.get("allowed")
    if allowed is not None and value not in allowed:
        raise ProfileError(f"{key} = {value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")
    bounds = f.metadata.get("range")
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ProfileError(f"{key} = {value!r} is out of range; it must be {bounds[0]}..{bounds[1]}")
    return value
