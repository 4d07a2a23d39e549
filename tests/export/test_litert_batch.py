"""LiteRT's symbolic batch: which graphs litert-torch can convert with one, and whether the result keeps it.

Small modules: the first decision is made from the traced graph, because a failed symbolic conversion
of BiRefNet costs minutes before the fixed-batch one starts; the second on a real conversion of a
module of a few convolutions (seconds).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("litert_torch", reason="litert-torch is not installed (extra 'litert')")


class _Convs(nn.Module):
    """Per-pixel work only: nothing reads the batch size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)))


class _TwoChannels(_Convs):
    """The same with a two-channel output: litert-torch keeps its batch symbolic all through."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(4, 2, 1)


class _Tokens(_Convs):
    """A Swin-like patch embedding: ``flatten`` of the feature map into tokens, as every Swin stage does."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        n, c, h, w = y.shape
        tokens = self.mix(y.flatten(2).transpose(1, 2))  # (N, H*W, C): a view to a size read from the batch
        return self.head(tokens.transpose(1, 2).reshape(n, c, h, w))


def _profile():
    from birefnet_edge.profile import load_profile

    return load_profile("litert-fp32").with_overrides(input_size=(64, 64), batch={"min": 1, "opt": 2, "max": 4})


def test_token_reshapes_on_the_batch_block_the_symbolic_batch_and_are_named() -> None:
    from birefnet_edge.export.litert import symbolic_batch_blocker

    reason = symbolic_batch_blocker(_Tokens().eval(), _profile())
    assert reason is not None and "aten.view" in reason and "through JAX" in reason


def test_per_pixel_graphs_keep_the_symbolic_batch() -> None:
    from birefnet_edge.export.litert import symbolic_batch_blocker

    assert symbolic_batch_blocker(_Convs().eval(), _profile()) is None


def test_a_fixed_batch_profile_needs_no_check() -> None:
    from birefnet_edge.export.litert import symbolic_batch_blocker

    fixed = _profile().with_overrides(batch={"min": 1, "opt": 1, "max": 1})
    assert symbolic_batch_blocker(_Tokens().eval(), fixed) is None


class _Stop(Exception):
    pass


def _exporter(litert):
    from birefnet_edge.export._base import ArtifactInfo

    return litert.LitertExporter(ArtifactInfo(name="tokens-litert-fp32", variant="tokens", weights={}, contract={}))


def test_a_graph_fixed_inside_at_the_traced_batch_is_found_after_converting() -> None:
    """A one-channel output ends in a RESHAPE to the traced [2, 1, H, W]: the input says -1, batch 1 cannot run."""
    from birefnet_edge.export.litert import batch_fixed_inside, convert

    profile = _profile()
    reason = batch_fixed_inside(convert(_Convs().eval(), profile, None), profile)
    assert reason is not None and "fixed it at 2 inside the graph" in reason and "at batch 1" in reason
    assert batch_fixed_inside(convert(_TwoChannels().eval(), profile, None), profile) is None


def test_a_symbolic_conversion_fixed_inside_is_replaced_by_the_fixed_batch(monkeypatch, tmp_path) -> None:
    import birefnet_edge.export.litert as litert

    asked: list[int | None] = []

    def convert(model, profile, batch):
        asked.append(batch)
        if batch is None:
            return b"converted with the batch -1 at the input"
        raise _Stop

    monkeypatch.setattr(litert, "convert", convert)
    monkeypatch.setattr(litert, "batch_fixed_inside", lambda data, profile: "fixed it at 2 inside the graph")
    with pytest.raises(_Stop):
        _exporter(litert).export(_Convs().eval(), _profile(), tmp_path)
    assert asked == [None, 1] and not (tmp_path / "model.tflite").exists()


@pytest.mark.parametrize(("module", "first_batch"), [(_Tokens, 1), (_Convs, None)])
def test_the_exporter_converts_a_blocked_graph_once_at_the_fixed_batch(
    monkeypatch, tmp_path, module, first_batch
) -> None:
    """No doomed symbolic attempt first: the first (and, for a blocked graph, only) conversion is the right one."""
    import birefnet_edge.export.litert as litert

    asked: list[int | None] = []

    def convert(model, profile, batch):
        asked.append(batch)
        raise _Stop

    monkeypatch.setattr(litert, "convert", convert)
    with pytest.raises(_Stop):
        _exporter(litert).export(module().eval(), _profile(), tmp_path)
    assert asked == [first_batch]


def test_a_failed_symbolic_conversion_falls_back_to_the_fixed_batch(monkeypatch, tmp_path) -> None:
    """A limit the graph check does not know: the symbolic conversion fails, the fixed batch is converted next."""
    import birefnet_edge.export.litert as litert
    from birefnet_edge.errors import ExportError

    monkeypatch.setattr(litert, "symbolic_batch_blocker", lambda model, profile: None)
    asked: list[int | None] = []

    def convert(model, profile, batch):
        asked.append(batch)
        if batch is None:
            raise ExportError("litert_torch.convert failed: TypeError: Shapes must be concrete | If using `jit` ...")
        raise _Stop

    monkeypatch.setattr(litert, "convert", convert)
    with pytest.raises(_Stop):
        _exporter(litert).export(_Convs().eval(), _profile(), tmp_path)
    assert asked == [None, 1]


def test_the_converters_error_is_cut_to_its_first_line_for_the_warning() -> None:
    from birefnet_edge.errors import ExportError
    from birefnet_edge.export.litert import _first_line

    joined = "litert_torch.convert failed: TypeError: Shapes must be concrete | If using `jit`, try ... | more"
    assert _first_line(ExportError(joined)) == "litert_torch.convert failed: TypeError: Shapes must be concrete"
    assert _first_line(RuntimeError("a\nb")) == "a"
    long = _first_line(ValueError("y" * 900))
    assert len(long) == 200 and long.endswith("...")


def test_the_reduced_size_check_export_reuses_the_batch_verdict(monkeypatch, tmp_path) -> None:
    """The export check converts the same model at a smaller size with the same exporter: no second decision."""
    import birefnet_edge.export.litert as litert

    decided, asked = [], []
    monkeypatch.setattr(litert, "symbolic_batch_blocker", lambda model, profile: decided.append(profile) or "blocked")

    def convert(model, profile, batch):
        asked.append((profile.input_size, batch))
        raise _Stop

    monkeypatch.setattr(litert, "convert", convert)
    exporter, model = _exporter(litert), _Tokens().eval()
    for size in (96, 64):
        with pytest.raises(_Stop):
            exporter.export(model, _profile().with_overrides(input_size=(size, size)), tmp_path)
    assert len(decided) == 1 and asked == [((96, 96), 1), ((64, 64), 1)]


def test_every_litert_target_of_a_command_shares_one_verdict(monkeypatch, tmp_path) -> None:
    """litert-fp32, -fp16 and -int8 of one model and size: one decision (for BiRefNet, minutes of decomposing)."""
    import birefnet_edge.export.litert as litert

    decided, asked = [], []
    monkeypatch.setattr(litert, "symbolic_batch_blocker", lambda model, profile: decided.append(profile) or "blocked")

    def convert(model, profile, batch):
        asked.append(batch)
        raise _Stop

    monkeypatch.setattr(litert, "convert", convert)
    model = _Tokens().eval()
    for _ in range(2):  # one exporter per artifact, as export_targets makes them
        with pytest.raises(_Stop):
            _exporter(litert).export(model, _profile(), tmp_path)
    assert len(decided) == 1 and asked == [1, 1]


def test_a_symbolic_conversion_fixed_inside_is_not_kept_beside_the_fixed_one(tmp_path) -> None:
    """The command's cache holds each conversion (172 MB for BiRefNet_lite at 1024 px, alive through an int8
    target's whole accuracy search): the symbolic one, never read again once the batch is fixed, is dropped."""
    import birefnet_edge.export.litert as litert
    from birefnet_edge.export import _cache

    model, profile = _Convs().eval(), _profile()
    _exporter(litert).export(model, profile, tmp_path)
    key = _cache.model_key(model, profile)
    tags = [k[-1] for k in _cache._PROGRAMS.items if k[:-1] == key]
    assert "litert-batch-verdict" in tags and "litert-batch-1" in tags and "litert-batch-None" not in tags
