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
import hashlib
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import torch

from birefnet_edge.profile import Profile

_KEEP = 6


def _tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    return [*model.parameters(), *model.buffers()]


def model_key(model: torch.nn.Module, profile: Profile) -> tuple[Hashable, ...]:
    """Identity of (architecture, weights, form, traced shapes); equal for two models with equal weights."""
    digest = hashlib.blake2b(digest_size=16)
    for t in _tensors(model):
        data = t.detach().cpu().contiguous()
        digest.update(str((t.dtype, tuple(t.shape))).encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().data if data.numel() else b"")
    config = getattr(model, "config", None)
    form = getattr(config, "deform", profile.deform)
    rng = profile.batch
    return (
        type(model).__qualname__,
        repr(config),
        form,
        model.training,
        digest.hexdigest(),
        tuple(profile.input_size),
        rng.min,
        rng.max,
        rng.example(),
    )


class _Lru:
    """Most-recent entries; with ``track``, an entry is dropped once the model it came from is edited in place.

    A ``torch.export`` program shares its weight tensors with the model it traced, so editing those
    tensors (their version counters move) would silently change a cached program.
    """

    def __init__(self, on_evict: Callable[[Any], None] | None = None, track: bool = False) -> None:
        self.items: OrderedDict[tuple, tuple[list[torch.Tensor], tuple[int, ...], Any]] = OrderedDict()
        self.on_evict = on_evict
        self.track = track

    def get(self, model: torch.nn.Module, key: tuple, make: Callable[[], Any]) -> Any:
        hit = self.items.get(key)
        if hit is not None and tuple(t._version for t in hit[0]) == hit[1]:
            self.items.move_to_end(key)
            return hit[2]
        if hit is not None:
            self._evict(self.items.pop(key)[2])
        value = make()
        tensors = _tensors(model) if self.track else []
        self.items[key] = (tensors, tuple(t._version for t in tensors), value)
        while len(self.items) > _KEEP:
            self._evict(self.items.popitem(last=False)[1][2])
        return value

    def _evict(self, value: Any) -> None:
        if self.on_evict is not None:
            self.on_evict(value)

    def clear(self) -> None:
        for _, _, value in self.items.values():
            self._evict(value)
        self.items.clear()


def _reference_key(model: torch.nn.Module, x: torch.Tensor) -> tuple[Hashable, ...]:
    digest = hashlib.blake2b(digest_size=16)
    data = x.detach().cpu().contiguous()
    digest.update(str((data.dtype, tuple(data.shape))).encode())
    digest.update(data.reshape(-1).view(torch.uint8).numpy().data)
    weights = hashlib.blake2b(digest_size=16)
    for t in _tensors(model):
        weights.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data if t.numel() else b"")
    config = getattr(model, "config", None)
    return type(model).__qualname__, repr(config), model.training, weights.hexdigest(), digest.hexdigest()


_PROGRAMS = _Lru(track=True)
_REFERENCES = _Lru(track=True)
_ONNX = _Lru(on_evict=lambda path: shutil.rmtree(path.parent, ignore_errors=True))
_TMP: list[Path] = []


def cached_program(model: torch.nn.Module, profile: Profile, make: Callable[[], Any], tag: str = "") -> Any:
    """The ``torch.export`` program for this model state and these shapes, made once per ``tag``."""
    return _PROGRAMS.get(model, (*model_key(model, profile), tag), make)


def cached_onnx(model: torch.nn.Module, profile: Profile, make: Callable[[Path], None]) -> Path:
    """Path of the raw exported ONNX for this model state, shapes and opset, written once by ``make(path)``."""

    def build() -> Path:
        if not _TMP:
            _TMP.append(Path(tempfile.mkdtemp(prefix="birefnet-edge-onnx-")))
            atexit.register(shutil.rmtree, _TMP[0], True)
        folder = Path(tempfile.mkdtemp(dir=_TMP[0]))
        try:
            make(folder / "raw.onnx")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return folder / "raw.onnx"

    return _ONNX.get(model, (*model_key(model, profile), profile.opset), build)


def cached_reference(model: torch.nn.Module, x: torch.Tensor, make: Callable[[], Any]) -> Any:
    """PyTorch's output for ``x``, computed once per model state and input (every target of a command checks
    against the same reference; at 1024 px one costs BiRefNet_lite ~10 s and ~2.5 GB)."""
    return _REFERENCES.get(model, _reference_key(model, x), make)


def clear() -> None:
    """Forget every cached program, reference and ONNX file (tests use this to measure an export from scratch)."""
    _PROGRAMS.clear()
    _REFERENCES.clear()
    _ONNX.clear()
