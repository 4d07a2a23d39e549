"""The conversion cache: in memory per process, and in ``$BIREFNET_EDGE_CACHE_DIR`` across processes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from birefnet_edge.export import _cache
from birefnet_edge.profile import load_profile

PROFILE = load_profile("onnx-fp32").with_overrides(input_size=(64, 64), batch={"min": 1, "opt": 2, "max": 4})


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """Empty in-memory caches for this test (the session's own stay untouched) and a cache folder."""
    monkeypatch.setattr(_cache, "_PROGRAMS", _cache._Lru(track=True))
    monkeypatch.setattr(_cache, "_ONNX", _cache._Lru())
    monkeypatch.setenv(_cache.CACHE_DIR_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _writer(calls: list[str], text: str = "graph"):
    def make(path):
        calls.append(text)
        path.write_text(text)
        path.with_name(path.name + ".data").write_bytes(b"\x01\x02")

    return make


def _forget_in_memory(monkeypatch) -> None:
    """What a new process sees: nothing in memory, only the cache folder."""
    monkeypatch.setattr(_cache, "_ONNX", _cache._Lru())
    monkeypatch.setattr(_cache, "_PROGRAMS", _cache._Lru(track=True))


def test_a_second_process_reads_the_stored_onnx_instead_of_exporting(fresh, monkeypatch):
    model, calls = torch.nn.Conv2d(3, 1, 1), []
    first = _cache.cached_onnx(model, PROFILE, _writer(calls))
    assert _cache.cached_onnx(model, PROFILE, _writer(calls)) == first and calls == ["graph"]  # in memory
    (entry,) = (fresh / "onnx").iterdir()
    assert sorted(p.name for p in entry.iterdir()) == ["complete", "raw.onnx", "raw.onnx.data"]
    _forget_in_memory(monkeypatch)
    second = _cache.cached_onnx(model, PROFILE, _writer(calls, "other"))
    assert calls == ["graph"] and second != first  # read from the folder, into a file of its own
    assert second.read_text() == "graph" and second.with_name("raw.onnx.data").read_bytes() == b"\x01\x02"
    assert not (second.parent / "complete").exists()


def test_other_weights_opset_or_tool_versions_are_other_entries(fresh, monkeypatch):
    model, calls = torch.nn.Conv2d(3, 1, 1), []
    _cache.cached_onnx(model, PROFILE, _writer(calls))
    with torch.no_grad():
        model.weight.add_(1)
    _cache.cached_onnx(model, PROFILE, _writer(calls))
    _cache.cached_onnx(model, PROFILE.with_overrides(opset=19), _writer(calls))
    monkeypatch.setattr(_cache, "_versions", lambda tools: ("torch==0",))
    _forget_in_memory(monkeypatch)
    _cache.cached_onnx(model, PROFILE, _writer(calls))
    assert len(calls) == 4 and len(list((fresh / "onnx").iterdir())) == 4


def test_half_written_or_unwritable_entries_cost_a_conversion_not_the_export(fresh, monkeypatch, tmp_path):
    model, calls = torch.nn.Conv2d(3, 1, 1), []
    entry = _cache.disk_entry(
        "onnx", (*_cache.model_key(model, PROFILE), PROFILE.opset), ("torch", "onnx", "onnxscript")
    )
    entry.mkdir(parents=True)
    (entry / "raw.onnx").write_text("half")  # no completion mark: a writer died
    assert _cache.cached_onnx(model, PROFILE, _writer(calls)).read_text() == "graph" and calls == ["graph"]
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(_cache.CACHE_DIR_ENV, str(tmp_path / "a-file"))  # cannot hold folders
    _forget_in_memory(monkeypatch)
    assert _cache.cached_onnx(model, PROFILE, _writer(calls)).read_text() == "graph" and len(calls) == 2


def test_without_the_variable_nothing_is_written(fresh, monkeypatch):
    monkeypatch.delenv(_cache.CACHE_DIR_ENV)
    model, calls = torch.nn.Conv2d(3, 1, 1), []
    assert _cache.disk_entry("onnx", _cache.model_key(model, PROFILE), ("torch",)) is None
    _cache.cached_onnx(model, PROFILE, _writer(calls))
    _forget_in_memory(monkeypatch)
    _cache.cached_onnx(model, PROFILE, _writer(calls))
    assert len(calls) == 2 and not fresh.exists()


@pytest.mark.openvino
def test_openvino_conversion_is_stored_and_read_back_unchanged(fresh, monkeypatch):
    ov = pytest.importorskip("openvino", reason="needs birefnet-edge[openvino]")
    from birefnet_edge.export import openvino as ov_export

    profile = load_profile("openvino-fp32").with_overrides(input_size=(64, 64), batch={"min": 1, "opt": 2, "max": 4})
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1)).eval()
    converted = ov_export.convert(model, profile, {})
    (entry,) = (fresh / "openvino").iterdir()
    _forget_in_memory(monkeypatch)

    def refuse(*args, **kwargs):
        raise AssertionError("converted again instead of reading the cache")

    monkeypatch.setattr(ov, "convert_model", refuse)
    read_back = ov_export.convert(model, profile, {})
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64)).astype(np.float32)
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}  # a CPU with AMX or AVX512-BF16 would default to bf16
    outputs = [ov.Core().compile_model(m, "CPU", f32)(x)[0] for m in (converted, read_back)]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    with torch.no_grad():
        np.testing.assert_allclose(outputs[1], model(torch.from_numpy(x)).numpy(), atol=1e-5)
    assert read_back.inputs[0].get_partial_shape().to_string() == "[1..4,3,64,64]"
    assert (entry / "model.xml").is_file() and (entry / "model.bin").is_file()


def _forms_and_sizes() -> set[tuple[str, tuple[int, ...]]]:
    return {(key[_cache._FORM], key[_cache._SIZE]) for key in _cache._PROGRAMS.items}


def test_retain_forgets_only_the_programs_of_other_forms_and_sizes(fresh):
    model, calls = torch.nn.Conv2d(3, 1, 1), []
    kept = PROFILE.with_overrides(deform="portable")
    other_form = PROFILE.with_overrides(deform="gather_int")
    other_size = kept.with_overrides(input_size=(96, 96))
    for profile in (kept, other_form, other_size):
        _cache.cached_program(model, profile, lambda p=profile: calls.append(p) or object(), tag="openvino")
    _cache.retain_programs({("portable", (64, 64))})
    assert _forms_and_sizes() == {("portable", (64, 64))}
    for profile in (kept, other_form, other_size):
        _cache.cached_program(model, profile, lambda p=profile: calls.append(p) or object(), tag="openvino")
    assert calls == [kept, other_form, other_size, other_form, other_size]  # only the kept one was not made again


def test_each_target_of_a_command_starts_without_the_programs_no_later_target_uses(fresh, monkeypatch, tmp_path):
    """bf16 (row-gather form) then fp32 and int8 (portable): the row-gather programs are gone before fp32."""
    from birefnet_edge.export import _pipeline

    seen = []

    def export_target(model, profile, out_dir, **kwargs):
        seen.append((profile.name, _forms_and_sizes()))
        model.set_deform_form(profile.deform, 1 << 20)
        _cache.cached_program(model, profile, object, tag="conversion")
        return _pipeline.ExportResult(profile.name, "failed", None, 0.0, 0, (), "not exported in this test")

    monkeypatch.setattr(_pipeline, "export_target", export_target)
    targets = ["openvino-bf16", "openvino-fp32", "openvino-int8"]
    _pipeline.export_targets("random:birefnet_tiny", targets, tmp_path / "out", size=(512, 512))
    assert seen == [
        ("openvino-bf16", set()),
        ("openvino-fp32", set()),  # only openvino-bf16 traced the gather_int form
        ("openvino-int8", {("portable", (512, 512))}),  # int8 converts the portable form at its own size
    ]


def test_weights_written_back_unchanged_keep_the_entries_and_changed_ones_do_not(fresh):
    """litert-torch writes every weight back in place with its own value: the cache must not take that as an
    edit (each LiteRT target converted the model again), but a real edit must still count."""
    model, calls = torch.nn.Conv2d(3, 1, 1), []

    def program(tag, source=model):
        return _cache.cached_program(source, PROFILE, lambda: calls.append(tag) or tag, tag=tag)

    def write_back(values=None):
        with torch.no_grad():
            for t in model.parameters():
                t.copy_(t.clone() if values is None else values)  # the version counters move either way

    program("a")
    write_back()
    program("a")
    assert calls == ["a"]
    write_back()  # again: the entry took the new counters as valid, and still does
    program("a")
    assert calls == ["a"]
    twin = torch.nn.Conv2d(3, 1, 1)
    twin.load_state_dict(model.state_dict())
    write_back(torch.tensor(0.5))  # a real edit: the program made from the model's tensors now holds 0.5s
    program("a", twin)  # equal weights to the old ones, but the cached entry shares the edited tensors
    assert calls == ["a", "a"]
    program("a")  # and the edited model itself gets a new entry of its own weights
    assert calls == ["a", "a", "a"]
