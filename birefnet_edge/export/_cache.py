"""Reuse of the slow, format-independent steps between targets exported in one process.

``torch.export`` of a BiRefNet takes far longer than any converter after it, and ``--all`` runs it
for six profiles that trace the very same graph (portable form, same size and batch range); the
ONNX translation is likewise identical for ``onnx-fp32``/``onnx-fp16`` and for the two TensorRT
profiles. Results are kept for the most recent keys only, and a key covers everything the
result depends on — the architecture and config, a hash of every weight, the deformable-conv form, the input size,
the batch range and (for ONNX) the opset; a cached ``torch.export`` program is also dropped when
the weights it shares with its model are edited in place.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from birefnet_edge.profile import Profile

_KEEP = 6
CACHE_DIR_ENV = "BIREFNET_EDGE_CACHE_DIR"
_DONE = "complete"


def _tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    return [*model.parameters(), *model.buffers()]


#: Where :func:`model_key` puts the deformable-conv form, the weights' digest and the traced input size.
_FORM, _DIGEST, _SIZE = 2, 4, 5


def _digest(tensors: list[torch.Tensor]) -> str:
    """Hash of the tensors' dtypes, shapes and values (a model's weights: :func:`_tensors`)."""
    digest = hashlib.blake2b(digest_size=16)
    for t in tensors:
        data = t.detach().cpu().contiguous()
        digest.update(str((t.dtype, tuple(t.shape))).encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().data if data.numel() else b"")
    return digest.hexdigest()


def model_key(model: torch.nn.Module, profile: Profile) -> tuple[Hashable, ...]:
    """Identity of (architecture, weights, form, traced shapes); equal for two models with equal weights."""
    config = getattr(model, "config", None)
    form = getattr(config, "deform", profile.deform)
    rng = profile.batch
    return (
        type(model).__qualname__,
        repr(config),
        form,
        model.training,
        _digest(_tensors(model)),
        tuple(profile.input_size),
        rng.min,
        rng.max,
        rng.example(),
    )


class _Lru:
    """Most-recent entries; with ``track``, an entry is dropped once the model it came from is edited in place.

    A ``torch.export`` program shares its weight tensors with the model it traced, so editing those
    tensors would silently change a cached program. An in-place write moves their version counters;
    when they moved, the tensors are hashed again and the entry is kept if they still hold the values
    it was made from (``digest``): litert-torch 0.10 writes every weight of the model back unchanged
    during its conversion, and each LiteRT target of a command converted the model again.
    """

    def __init__(self, on_evict: Callable[[Any], None] | None = None, track: bool = False) -> None:
        # key -> (tracked tensors, their version counters, their digest when made, value)
        self.items: OrderedDict[tuple, tuple[list[torch.Tensor], tuple[int, ...], str | None, Any]] = OrderedDict()
        self.on_evict = on_evict
        self.track = track

    def get(self, model: torch.nn.Module, key: tuple, make: Callable[[], Any], digest: str | None = None) -> Any:
        """The entry of ``key``, else ``make()`` stored under it; ``digest``: :func:`_digest` of the model's weights."""
        hit = self.items.get(key)
        if hit is not None and self._valid(key, hit):
            self.items.move_to_end(key)
            return hit[3]
        if hit is not None:
            self._evict(self.items.pop(key)[3])
        value = make()
        tensors = _tensors(model) if self.track else []
        self.items[key] = (tensors, tuple(t._version for t in tensors), digest, value)
        while len(self.items) > _KEEP:
            self._evict(self.items.popitem(last=False)[1][3])
        return value

    def _valid(self, key: tuple, hit: tuple[list[torch.Tensor], tuple[int, ...], str | None, Any]) -> bool:
        tensors, versions, digest, value = hit
        now = tuple(t._version for t in tensors)
        if now == versions:
            return True
        if digest is None or _digest(tensors) != digest:
            return False
        self.items[key] = (tensors, now, digest, value)  # written back unchanged: valid until the next write
        return True

    def _evict(self, value: Any) -> None:
        if self.on_evict is not None:
            self.on_evict(value)

    def clear(self) -> None:
        for *_, value in self.items.values():
            self._evict(value)
        self.items.clear()

    def retain(self, wanted: Callable[[tuple], bool]) -> None:
        """Drop the entries whose key ``wanted`` refuses."""
        for key in [k for k in self.items if not wanted(k)]:
            self._evict(self.items.pop(key)[3])


def _reference_key(model: torch.nn.Module, x: torch.Tensor, weights: str) -> tuple[Hashable, ...]:
    config = getattr(model, "config", None)
    return type(model).__qualname__, repr(config), model.training, weights, _digest([x])


_PROGRAMS = _Lru(track=True)
_REFERENCES = _Lru(track=True)
_ONNX = _Lru(on_evict=lambda path: shutil.rmtree(path.parent, ignore_errors=True))
_TMP: list[Path] = []


@dataclass(frozen=True)
class Stored:
    """How a cached result is also kept in ``$BIREFNET_EDGE_CACHE_DIR``: its folder name, the distributions
    whose versions it depends on, and how to write it into a folder and read it back."""

    kind: str
    tools: tuple[str, ...]
    save: Callable[[Any, Path], None]
    load: Callable[[Path], Any]


def cached_program(
    model: torch.nn.Module, profile: Profile, make: Callable[[], Any], tag: str = "", stored: Stored | None = None
) -> Any:
    """The ``torch.export`` program (or a conversion of it) for this model state and shapes, made once per
    ``tag``; with ``stored``, also kept on disk for other processes."""
    key = (*model_key(model, profile), tag)
    return _PROGRAMS.get(model, key, lambda: _through_disk(stored, key, make), digest=key[_DIGEST])


def forget_program(model: torch.nn.Module, profile: Profile, tag: str) -> None:
    """Drop what :func:`cached_program` keeps for this model state, shapes and ``tag`` (no longer needed)."""
    key = (*model_key(model, profile), tag)
    _PROGRAMS.retain(lambda other: other != key)


def cached_onnx(model: torch.nn.Module, profile: Profile, make: Callable[[Path], None]) -> Path:
    """Path of the raw exported ONNX for this model state, shapes and opset, written once by ``make(path)``."""
    key = (*model_key(model, profile), profile.opset)

    def build() -> Path:
        if not _TMP:
            _TMP.append(Path(tempfile.mkdtemp(prefix="birefnet-edge-onnx-")))
            atexit.register(shutil.rmtree, _TMP[0], True)
        folder = Path(tempfile.mkdtemp(dir=_TMP[0]))
        path = folder / "raw.onnx"

        def write() -> Path:
            make(path)
            return path

        def load(entry: Path) -> Path:
            _copy_files(entry, folder)
            return path

        try:
            stored = Stored("onnx", ("torch", "onnx", "onnxscript"), lambda _, into: _copy_files(folder, into), load)
            return _through_disk(stored, key, write)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    return _ONNX.get(model, key, build)


def disk_entry(kind: str, key: tuple, tools: tuple[str, ...]) -> Path | None:
    """Folder of a ``kind`` result with this in-memory key in ``$BIREFNET_EDGE_CACHE_DIR`` (stored or not), or
    None when no cache folder is set; the key adds the versions of ``tools``."""
    root = os.environ.get(CACHE_DIR_ENV)
    if not root:
        return None
    digest = hashlib.blake2b(repr((*key, _versions(tools))).encode(), digest_size=16).hexdigest()
    return Path(root).expanduser() / kind / digest


def _through_disk(stored: Stored | None, key: tuple, make: Callable[[], Any]) -> Any:
    """``stored.load`` of the disk entry when one is complete and readable, else ``make()``, then stored."""
    entry = disk_entry(stored.kind, key, stored.tools) if stored is not None else None
    if entry is None:
        return make()
    if (entry / _DONE).is_file():
        try:
            return stored.load(entry)
        except (OSError, RuntimeError):  # vanished meanwhile, or unreadable (truncated by hand): make it again
            pass
    value = make()
    _store_entry(entry, lambda folder: stored.save(value, folder))
    return value


def _store_entry(entry: Path, write: Callable[[Path], None]) -> None:
    """Write an entry through ``write(folder)`` into a temporary folder, then rename it into place.

    A cache that cannot be written (read-only, full disk) costs the next command a conversion, not
    this one its export, so failures here are ignored; so is another process having stored it first.
    """
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}."))
    except OSError:
        return
    try:
        write(staging)
        (staging / _DONE).touch()
        staging.rename(entry)
    except OSError:
        pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _copy_files(source: Path, target: Path) -> None:
    for path in source.iterdir():
        if path.name != _DONE:
            shutil.copy2(path, target / path.name)


@functools.lru_cache(maxsize=8)
def _versions(tools: tuple[str, ...]) -> tuple[str, ...]:
    from importlib import metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "-"

    return tuple(f"{name}=={version(name)}" for name in tools)


def cached_reference(model: torch.nn.Module, x: torch.Tensor, make: Callable[[], Any]) -> Any:
    """PyTorch's output for ``x``, computed once per model state and input (every target of a command checks
    against the same reference; at 1024 px one costs BiRefNet_lite ~10 s and ~2.5 GB)."""
    weights = _digest(_tensors(model))
    return _REFERENCES.get(model, _reference_key(model, x, weights), make, digest=weights)


def retain_programs(needed: set[tuple[str, tuple[int, int]]]) -> None:
    """Forget the programs and conversions whose (deformable-conv form, input size) is not in ``needed``.

    A command's later targets can only use entries of their own form and size (or their check's), and
    each entry holds memory: an OpenVINO conversion of BiRefNet_lite carries its own copy of the weights,
    and the row-gather form's program its index tables. Kept for an int8 target exported after
    ``openvino-bf16``, they raised its export peak. References stay: they are logits, a few MB.
    """
    _PROGRAMS.retain(lambda key: (key[_FORM], key[_SIZE]) in needed)


def clear() -> None:
    """Forget every cached program, reference and ONNX file (tests use this to measure an export from scratch)."""
    _PROGRAMS.clear()
    _REFERENCES.clear()
    _ONNX.clear()
