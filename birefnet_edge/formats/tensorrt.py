"""``[options]`` of ``tensorrt`` profiles (read by ``export/tensorrt.py``, ``runtime/tensorrt.py`` and build-engine)."""

from __future__ import annotations

from dataclasses import dataclass

from birefnet_edge.formats._base import FormatOptions, register


@register("tensorrt")
@dataclass(frozen=True)
class TensorrtOptions(FormatOptions):
    """TensorRT engine-build settings.

    Attributes:
        workspace_gib: Builder workspace memory pool limit in GiB.
        timing_cache: File name (inside the artifact folder) of the timing cache reused by later builds.
    """

    workspace_gib: float = 4.0
    timing_cache: str = "timing.cache"

    def __post_init__(self) -> None:
        from birefnet_edge.errors import ProfileError

        if self.workspace_gib <= 0:
            raise ProfileError(f"options.workspace_gib must be > 0; got {self.workspace_gib}")
        if "/" in self.timing_cache or "\\" in self.timing_cache or self.timing_cache in ("", ".", ".."):
            raise ProfileError(
                f"options.timing_cache = {self.timing_cache!r} must be a plain file name (it lives in the artifact)"
            )
