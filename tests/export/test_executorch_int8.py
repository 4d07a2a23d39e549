"""ExecuTorch int8 (PT2E, XNNPACK's scheme): the Q/DQ program's restore, the float rules on a traced program."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("executorch", reason="executorch is not installed (extra 'executorch')")
pytestmark = pytest.mark.executorch


class _Small(torch.nn.Module):
    """conv -> ReLU -> conv (+ residual) -> linear: a fused pattern, a plain one, an add between int8 layers,
    and an int8 output read by two float ops (the add, the sigmoid)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.c = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.a(x))
        b = self.b(y)
        z = b + y
        return self.c(z.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) + torch.sigmoid(b[:, :4])


@pytest.fixture(scope="module")
def small():
    from birefnet_edge.export.int8.executorch import calibrated

    torch.manual_seed(0)
    model = _Small().eval()
    program = torch.export.export(model, (torch.zeros(1, 3, 16, 16),))
    images = np.random.default_rng(0).standard_normal((6, 3, 16, 16)).astype(np.float32)
    return program, calibrated(program, images[:4, None], frozenset()), images[4:]


def _ops(module: torch.fx.GraphModule) -> list[str]:
    from birefnet_edge.export.int8.executorch import op_name

    return [op_name(n) for n in module.graph.nodes if n.op == "call_function"]


def _int8_inputs(module: torch.fx.GraphModule, name: str) -> int:
    """How many of layer ``name``'s inputs come through a dequantize op."""
    node = next(n for n in module.graph.nodes if n.name == name)
    return sum("dequantize" in str(a.target) for a in node.all_input_nodes)


def test_every_layer_is_annotated_with_its_input_weight_and_output(small) -> None:
    from birefnet_edge.export.int8.executorch import restore

    _, converted, _ = small
    everything = restore(converted, set())
    # The conv read by a ReLU too (the plain conv annotator skips it): input and weight int8, else XNNPACK would
    # get a float input beside int8 weights and refuse the program when it loads.
    assert {_int8_inputs(everything, name) for name in ("conv2d", "conv2d_1", "linear")} == {2}


def test_restoring_every_layer_gives_back_the_float_program_exactly(small) -> None:
    from birefnet_edge.export.int8.executorch import restore, run_module

    program, converted, images = small
    float_logits = run_module(program.module(), images)
    names = {"conv2d", "conv2d_1", "linear"}
    restored = restore(converted, names)
    assert not [op for op in _ops(restored) if op.startswith("quantized_decomposed")]
    np.testing.assert_array_equal(run_module(restored, images), float_logits)
    assert np.abs(run_module(restore(converted, set()), images) - float_logits).max() > 1e-4


def test_a_restored_layer_reads_float_unless_an_int8_layer_made_its_input(small) -> None:
    from birefnet_edge.export.int8.executorch import restore

    _, converted, _ = small
    first = restore(converted, {"conv2d"})
    # conv2d: its input and weight are float again; conv2d_1 (int8) still reads its output through a Q/DQ pair.
    assert _int8_inputs(first, "conv2d") == 0 and _int8_inputs(first, "conv2d_1") == 2
    second = restore(converted, {"conv2d_1"})
    # conv2d_1 restored, but conv2d (int8, with its ReLU) writes int8: the float layer reads it dequantized, and
    # the residual add keeps reading the rounded values; the weight is float.
    node = next(n for n in second.graph.nodes if n.name == "conv2d_1")
    assert "dequantize_per_tensor" in str(node.args[0].target) and node.args[1].op == "get_attr"


def test_the_float_rules_find_their_layers_in_the_traced_tiny_program(tiny_model) -> None:
    from birefnet_edge.export._base import export_program
    from birefnet_edge.export.executorch import program_profile
    from birefnet_edge.export.int8.executorch import QUANTIZED_OPS, graph_view, model_macs
    from birefnet_edge.export.int8.rules import keep_float
    from birefnet_edge.profile import load_profile

    profile = program_profile(load_profile("executorch-int8").with_overrides(input_size=(64, 64)))
    from birefnet_edge.model import load_model

    model, _ = load_model("random:birefnet_tiny", deform=profile.deform, deform_band=profile.deform_band)
    program = export_program(model.eval(), profile)
    view = graph_view(program.graph, tuple(program.graph_signature.user_inputs))
    kept = keep_float(view, profile.quantization.keep_float)
    rules = {rule: {n for n, r in kept.items() if r == rule} for rule in profile.quantization.keep_float}
    assert all(rules.values()), {rule: len(names) for rule, names in rules.items()}
    # The offset convs: those behind a row read's indices (aten.embedding's input 1), all of them kept.
    samplers = [n for n in view.nodes.values() if n.op == "aten.embedding"]
    behind_indices = set().union(*(view.ancestors(s.inputs[1]) for s in samplers))
    assert behind_indices and behind_indices <= rules["deform_offsets"]
    assert {view.nodes[n].op for n in rules["deform_offsets"]} == {"aten.conv2d"}
    # The layer norms stay float by rule; the attention rule keeps the fused attention nodes.
    assert {view.nodes[n].op for n in rules["layer_norm"]} == {"aten.layer_norm"}
    assert "aten.scaled_dot_product_attention" in {view.nodes[n].op for n in rules["attention"]}
    # MACs: one figure per conv and linear layer, each from its traced shapes.
    macs = model_macs(program.graph)
    layers = [n for n in view.nodes.values() if n.op in QUANTIZED_OPS]
    assert set(macs) == {n.name for n in layers} and min(macs.values()) > 0


def test_each_reader_of_a_dequantize_gets_its_own_copy() -> None:
    """XNNPACK's partitioner joins the groups of layers that share a dequantize op (on the tiny model their union
    had a path out and back in: "found dependency cycles"); each reader gets its own copy, same values."""
    from birefnet_edge.export.int8.executorch import _DEQUANTIZE, one_reader_per_dequantize, op_name

    qd = torch.ops.quantized_decomposed

    class Shared(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q = qd.quantize_per_tensor.default(x, 0.05, 3, -128, 127, torch.int8)
            d = qd.dequantize_per_tensor.default(q, 0.05, 3, -128, 127, torch.int8)
            return d.transpose(2, 3) + d * 2 + torch.relu(d)

    module = torch.fx.symbolic_trace(Shared())
    x = torch.randn(1, 2, 4, 4)
    before = module(x)
    readers = [len(n.users) for n in module.graph.nodes if op_name(n) in _DEQUANTIZE]
    assert readers == [3]
    assert one_reader_per_dequantize(module.graph) == 2
    module.recompile()
    assert [len(n.users) for n in module.graph.nodes if op_name(n) in _DEQUANTIZE] == [1, 1, 1]
    torch.testing.assert_close(module(x), before, rtol=0, atol=0)


def test_a_layer_applied_twice_gets_a_bias_of_its_own() -> None:
    """The backbone runs on the image and its half-size copy: each linear's twin reads the same bias. XNNPACK
    defines a tensor once per delegate, so an int8 twin got the float twin's fp32 bias and the program could not
    be loaded; each layer now reads its own copy (the weights stay shared)."""
    from birefnet_edge.export.int8.executorch import calibrated, op_name, own_biases, restore, run_module

    class Twice(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            tokens = x.flatten(2).transpose(1, 2)
            return self.fc(tokens) + self.fc(tokens[:, ::2].repeat(1, 2, 1))

    program = torch.export.export(Twice().eval(), (torch.zeros(1, 8, 4, 4),))
    images = np.random.default_rng(2).standard_normal((3, 8, 4, 4)).astype(np.float32)
    converted = calibrated(program, images[:2, None], frozenset())
    module = restore(converted, {"linear"})  # one twin float, the other int8: the failing case
    before = run_module(module, images[2:])
    assert own_biases(module) == 1
    layers = [n for n in module.graph.nodes if op_name(n) == "aten.linear"]
    biases = [n.args[2] for n in layers]
    assert len(set(biases)) == 2 and all(len(b.users) == 1 for b in biases)
    np.testing.assert_array_equal(run_module(module, images[2:]), before)
    lifted = torch.export.export(module, (torch.from_numpy(images[2:]),)).graph_signature.parameters
    assert len([p for p in lifted if "bias" in p]) == 2


def test_a_mixed_program_lowers_into_one_xnnpack_delegate_with_its_conversions(small, tmp_path) -> None:
    """Between an int8 layer and a float one the quantize/dequantize ops are left over once XNNPACK's int8
    configs took each layer with its own; they were left on the portable kernels (one element at a time) and
    split the delegate (student-s at 512 px: 32 parts, 15% of the time outside XNNPACK). XNNPACK takes them as
    convert ops beside the float ops; the program still runs as the Q/DQ program does."""
    import executorch.kernels.quantized  # noqa: F401  (the int8 program's portable kernels, should any remain)
    from executorch.runtime import Runtime

    from birefnet_edge.export.executorch import count_delegation, lower, write_program
    from birefnet_edge.export.int8.executorch import int8_program, restore, run_module
    from birefnet_edge.profile import load_profile

    _, converted, images = small
    mixed = restore(converted, {"conv2d_1"})  # int8 -> float -> int8 layers
    expected = run_module(mixed, images)
    edge = lower(int8_program(mixed, torch.from_numpy(images[:1])), load_profile("executorch-int8"))
    delegation = count_delegation(edge, "XNNPACK")
    assert (delegation.partitions, delegation.fallback_ops) == (1, {})
    write_program(edge, tmp_path / "model.pte", load_profile("executorch-int8"))
    method = Runtime.get().load_program(tmp_path / "model.pte").load_method("forward")
    for image, want in zip(images, expected):
        got = method.execute([torch.from_numpy(image[None])])[0].numpy()
        # XNNPACK rounds some requantizations one int8 step (~0.008 here) away from PyTorch's Q/DQ ops.
        np.testing.assert_allclose(got[0], want, atol=0.02)


class _Padded(torch.nn.Module):
    """An int8 conv whose output is zero-padded for the next conv, as Swin pads its windows, and for a float op."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        pad = torch.nn.functional.pad
        return self.b(pad(y, (1, 1, 1, 1))) + torch.sigmoid(pad(y, (1, 1, 1, 1)))[:, :4, 1:-1, 1:-1]


@pytest.mark.parametrize("restored", [set(), {"conv2d_1"}], ids=["both-int8", "float-after-pad"])
def test_a_pad_after_an_int8_layer_lowers_loads_and_runs(restored, tmp_path) -> None:
    """XNNPACK quantizes a zero pad that reads a dequantize op, with that op's parameters; after a convert op
    (standalone dequantize) that gave the pad a float input and an int8 output (the tiny program did not load)
    or gave a float conv an int8 input (the lowering failed). Such a dequantize stays out of the delegate."""
    from executorch.runtime import Runtime

    from birefnet_edge.export.executorch import lower, write_program
    from birefnet_edge.export.int8.executorch import calibrated, int8_program, restore, run_module
    from birefnet_edge.profile import load_profile

    torch.manual_seed(0)
    program = torch.export.export(_Padded().eval(), (torch.zeros(1, 3, 16, 16),))
    images = np.random.default_rng(0).standard_normal((6, 3, 16, 16)).astype(np.float32)
    mixed = restore(calibrated(program, images[:4, None], frozenset()), restored)
    expected = run_module(mixed, images[4:])
    profile = load_profile("executorch-int8")
    write_program(lower(int8_program(mixed, torch.from_numpy(images[:1])), profile), tmp_path / "m.pte", profile)
    method = Runtime.get().load_program(tmp_path / "m.pte").load_method("forward")
    got = np.concatenate([method.execute([torch.from_numpy(image[None])])[0].numpy() for image in images[4:]])
    np.testing.assert_allclose(got, expected, atol=0.02)  # one int8 step of rounding, as above
