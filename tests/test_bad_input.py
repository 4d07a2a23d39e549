"""Bad input and faults through the CLI: each ends with one line naming the fix and a non-zero exit.

Every case here was found by running the commands as a new user would (issue 8, section 4).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from birefnet_edge.cli import main

Cli = Callable[..., tuple[int, str]]


@pytest.fixture
def cli(capsys) -> Cli:
    """Run the CLI in-process; return (exit code, stdout + stderr)."""

    def invoke(*args: str | Path) -> tuple[int, str]:
        with pytest.raises(SystemExit) as stop:
            main([str(a) for a in args])
        captured = capsys.readouterr()
        return stop.value.code, captured.out + captured.err

    return invoke


def _one_error_line(text: str) -> str:
    """The single ``error: ...`` line of a failed command (and no traceback)."""
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, text
    return errors[0]


def _copy_with_manifest(src: Path, dst: Path, edit: Callable[[dict], None]) -> Path:
    folder = shutil.copytree(src, dst)
    data = json.loads((folder / "manifest.json").read_text())
    edit(data)
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder


@pytest.fixture
def wrong_hash(onnx_artifact: Path, tmp_path: Path) -> Path:
    """The honest tiny artifact whose manifest records another sha256 for model.onnx."""

    def edit(data: dict) -> None:
        data["files"][0]["sha256"] = "0" * 64

    return _copy_with_manifest(onnx_artifact, tmp_path / "wrong-hash", edit)


@pytest.fixture
def list_manifest(tmp_path: Path) -> Path:
    folder = tmp_path / "list-manifest"
    folder.mkdir()
    (folder / "manifest.json").write_text("[1, 2]")
    return folder


def test_parity_refuses_a_changed_file_and_no_verify_skips_the_hash(wrong_hash: Path, cli: Cli) -> None:
    code, text = cli("parity", wrong_hash, "--synthetic", "1", "--batch", "1")
    assert code == 1
    assert "model.onnx does not match its sha256" in _one_error_line(text) and "--no-verify" in text
    code, text = cli("parity", wrong_hash, "--synthetic", "1", "--batch", "1", "--no-verify")
    assert code == 0, text
    assert "PASS" in text


def test_predict_and_bench_refuse_a_changed_file(wrong_hash: Path, tmp_path: Path, cli: Cli, photo: Path) -> None:
    code, text = cli("predict", wrong_hash, photo, "--out", tmp_path / "out")
    assert code == 1 and "does not match its sha256" in _one_error_line(text)
    assert not (tmp_path / "out").exists()
    code, text = cli("bench", wrong_hash, "--runs", "1", "--warmup", "0", "--batch", "1")
    assert code == 1 and "does not match its sha256" in _one_error_line(text)


@pytest.mark.parametrize("command", ["parity", "bench", "predict"])
def test_manifest_of_the_wrong_shape_is_one_error_line(
    command: str, list_manifest: Path, photo: Path, tmp_path: Path, cli: Cli
) -> None:
    extra = {"parity": ["--synthetic", "1"], "bench": ["--runs", "1"], "predict": [photo, "--out", tmp_path / "o"]}
    code, text = cli(command, list_manifest, *extra[command])
    assert code == 1
    assert "must be a JSON object; got list" in _one_error_line(text)


@pytest.mark.parametrize("make", ["missing", "no manifest"])
def test_bench_on_a_folder_that_is_no_artifact_fails(make: str, tmp_path: Path, cli: Cli) -> None:
    target = tmp_path / "nothing"
    if make == "no manifest":
        target.mkdir()
    code, text = cli("bench", target, "--runs", "1", "--warmup", "0")
    assert code == 1
    assert ("artifact folder not found" if make == "missing" else "has no manifest.json") in _one_error_line(text)


def test_parity_without_its_source_checkpoint_fails_unless_skips_are_allowed(
    onnx_artifact: Path, tmp_path: Path, cli: Cli
) -> None:
    def edit(data: dict) -> None:
        data["weights"]["source"] = str(tmp_path / "deleted.safetensors")

    folder = _copy_with_manifest(onnx_artifact, tmp_path / "orphan", edit)
    code, text = cli("parity", folder, "--synthetic", "1", "--batch", "1")
    assert code == 1
    line = _one_error_line(text)
    assert "could not be judged" in line and "deleted.safetensors" in line and "--allow-skip" in line
    code, text = cli("parity", folder, "--synthetic", "1", "--batch", "1", "--allow-skip")
    assert code == 0 and "SKIPPED" in text


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (200, 120, 40)).save(path)
    return path


def test_predict_out_that_is_a_file_fails_before_the_model_loads(photo: Path, tmp_path: Path, cli: Cli) -> None:
    taken = tmp_path / "masks.png"
    taken.write_bytes(b"not a folder")
    code, text = cli("predict", "random:birefnet_tiny", photo, "--out", taken)
    assert code == 1 and "is a file, not a folder; pass a folder path" in _one_error_line(text)
    assert "segmenting" not in text and taken.read_bytes() == b"not a folder"


@pytest.mark.parametrize(
    ("spec", "size", "code", "message"),
    [
        ("random:birefnet_tiny", "100000", 2, "100000 is larger than the 4096 px a side"),
        ("random:birefnet_tiny", "100", 2, "100: each side must be a multiple of 32, at least 64 .e.g. 96 or 128."),
        ("random:birefnet_tiny", "64x16", 2, "64x16: each side must be a multiple of 32, at least 64 .e.g. 64."),
        ("random:birefnet_tiny", "32", 2, "32: each side must be a multiple of 32, at least 64 .e.g. 64."),
    ],
)
def test_predict_size_is_bounded_up_front(
    spec: str, size: str, code: int, message: str, photo: Path, tmp_path: Path, cli: Cli
) -> None:
    got, text = cli("predict", spec, photo, "--out", tmp_path / "out", "--size", size)
    assert got == code and "Traceback" not in text
    assert re.search(message, text), text
    assert not (tmp_path / "out").exists()


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("keep me")
    return path


@pytest.mark.parametrize("command", ["parity", "bench"])
@pytest.mark.parametrize("under", [False, True])
def test_report_folder_that_is_a_file_fails_before_any_work(
    command: str, under: bool, onnx_artifact: Path, a_file: Path, cli: Cli
) -> None:
    report = a_file / "report" if under else a_file
    code, text = cli(command, onnx_artifact, "--report", report)
    assert code == 1
    why = "cannot be created: .*a-file is a file" if under else "is a file, not a folder"
    assert re.search(f"--report {re.escape(str(report))} {why}", _one_error_line(text))
    assert "PASS" not in text and "bench " not in text and a_file.read_text() == "keep me"


def test_report_command_on_a_binary_file_or_a_bad_out(tmp_path: Path, a_file: Path, cli: Cli) -> None:
    binary = tmp_path / "results.json"
    binary.write_bytes(bytes(range(256)) * 4)
    code, text = cli("report", binary)
    assert code == 1
    assert "is not a birefnet-edge results file" in _one_error_line(text) and "--report run wrote" in text
    from birefnet_edge.parity import build_report

    binary.write_text(json.dumps(build_report(parity=[]).to_dict()))
    code, text = cli("report", binary, "--out", a_file)
    assert code == 1 and "--out " in text and "is a file, not a folder" in _one_error_line(text)


def test_samples_that_cannot_be_saved_do_not_fail_a_passing_artifact(onnx_artifact: Path, a_file: Path) -> None:
    from birefnet_edge.parity import PASS, check_artifact, load_inputs

    result = check_artifact(onnx_artifact, load_inputs(None, synthetic=1, limit=0), (1,), samples_dir=a_file / "s")
    assert result.status == PASS and "report samples not saved" in result.reason and result.samples is None


@pytest.mark.parametrize("command", ["export", "pipeline"])
def test_export_out_that_is_a_file_fails_before_the_model_loads(
    command: str, a_file: Path, cli: Cli, monkeypatch
) -> None:
    import birefnet_edge.model as model_package

    monkeypatch.setattr(model_package, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    code, text = cli(command, "--weights", "random:birefnet_tiny", "--target", "onnx-fp32", "--out", a_file)
    assert code == 1 and "is a file, not a folder" in _one_error_line(text)
    assert "report this as a bug" not in text and a_file.read_text() == "keep me"


def test_failed_export_leaves_no_empty_output_folder(tmp_path: Path, cli: Cli, monkeypatch) -> None:
    from birefnet_edge.errors import ExportError
    from birefnet_edge.export.onnx import OnnxExporter

    def fail(*args, **kwargs):
        raise ExportError("the converter gave up (simulated)")

    monkeypatch.setattr(OnnxExporter, "export", fail)
    out = tmp_path / "new" / "dist"
    code, text = cli(
        "export", "--weights", "random:birefnet_tiny", "--target", "onnx-fp32", "--size", "64", "--out", out
    )
    assert code == 1 and "1 of 1 target(s) failed: onnx-fp32" in _one_error_line(text) and "simulated" in text
    assert not (tmp_path / "new").exists()  # created by the run, left empty: removed
    kept = tmp_path / "kept"
    kept.mkdir()
    assert cli("export", "--weights", "random:birefnet_tiny", "--target", "onnx-fp32", "--out", kept)[0] == 1
    assert kept.is_dir()  # existed before the run: never removed


def test_build_engine_on_a_missing_onnx_says_the_file_is_missing(tmp_path: Path, cli: Cli) -> None:
    code, text = cli("build-engine", tmp_path / "model.onnx")
    assert code == 1
    line = _one_error_line(text)
    assert "ONNX file not found" in line and "model.onnx" in line and "--profile" not in line


@pytest.mark.parametrize(
    ("command", "option", "value", "rule"),
    [
        ("bench", "--batch", "0", "a batch size must be 1 or more"),
        ("parity", "--batch", "0", "a batch size must be 1 or more"),
        ("parity", "--batch", "-3", "a batch size must be 1 or more"),
        ("pipeline", "--batch", "0", "a batch size must be 1 or more"),
        ("predict", "--batch", "0", "a batch size must be 1 or more"),
        ("bench", "--runs", "0", "must be 1 or more"),
        ("bench", "--warmup", "-1", "must be 0 or more"),
        ("parity", "--synthetic", "9", "must be 0..4"),
    ],
)
def test_out_of_range_numbers_are_usage_errors_naming_the_value(
    command: str, option: str, value: str, rule: str, photo: Path, tmp_path: Path, cli: Cli
) -> None:
    extra = {
        "pipeline": ["--weights", "random:birefnet_tiny", "--out", tmp_path],
        "predict": ["random:birefnet_tiny", photo, "--out", tmp_path / "o"],
    }.get(command, [tmp_path])
    code, text = cli(command, *extra, option, value)
    assert code == 2 and f"{option}: {value}: " in text and rule in text and "Traceback" not in text


COMMANDS = ["export", "build-engine", "parity", "bench", "predict", "report", "pipeline", "targets", "models"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_flags_as_plain_flags_and_arguments_in_capitals(command: str, cli: Cli) -> None:
    code, text = cli(command, "--help")
    assert code == 0 and "<bool>" not in text
    usage = text.split("\n\n")[0]
    assert usage == usage.replace("artifacts", "").replace("results ", ""), usage  # ARTIFACT, RESULTS: as predict


def test_overwrite_is_a_plain_flag(photo: Path, tmp_path: Path, cli: Cli) -> None:
    code, text = cli("predict", "random:birefnet_tiny", photo, "--out", tmp_path / "o", "--overwrite", "true")
    assert code == 1 and "input not found: true; flags such as --overwrite take no value" in _one_error_line(text)


def test_parity_and_bench_each_name_their_own_batch_default(cli: Cli) -> None:
    parity_help, bench_help = (" ".join(cli(command, "--help")[1].split()) for command in ("parity", "bench"))
    assert "(default: 1 and 3)" in parity_help and "bench" not in parity_help.split("--batch")[1].split("--")[0]
    assert "(default: 1 and 4)" in bench_help and "parity" not in bench_help.split("--batch")[1].split("--")[0]


def test_sigterm_during_export_cleans_up_like_ctrl_c(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    temp, out = tmp_path / "tmp", tmp_path / "dist"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = ["export", "--weights", "random:birefnet_tiny", "--target", "onnx-fp32", "--size", "64", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "birefnet_edge.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while not list(temp.glob("birefnet-edge-onnx-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # the ONNX scratch folder appears mid-export, inside the .partial folder's lifetime
    assert proc.poll() is None, "the export ended before it could be interrupted"
    assert list(out.glob(".*.partial")), "SIGTERM should arrive while the artifact is being staged"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "terminated" in err.decode()
    assert not out.exists()  # the .partial folder is gone, and with it the folder the run created
    assert list(temp.iterdir()) == []  # no /tmp/birefnet-edge-onnx-* left


@pytest.mark.parametrize(
    ("signal_kind", "code", "said"), [("SIGTERM", 143, "terminated"), ("Ctrl-C", 130, "interrupted")]
)
def test_an_error_raised_while_a_signal_unwinds_the_run_says_why_it_stopped(
    monkeypatch, capsys, signal_kind: str, code: int, said: str
) -> None:
    """A signal sent to the process group also ends PyTorch's DataLoader workers; the main process then raised
    "DataLoader worker ... is killed by signal" during our unwinding, and SIGTERM during `distill` showed that
    traceback instead of "terminated"."""
    import birefnet_edge.cli as cli_module

    def command(args, standalone_mode):
        try:
            if signal_kind == "SIGTERM":
                cli_module._raise_terminated(15, None)
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Terminated.") from None

    monkeypatch.setattr(cli_module, "app", command)
    with pytest.raises(SystemExit) as exit_info:
        main(["distill"])
    assert exit_info.value.code == code
    assert capsys.readouterr().err.strip() == said


def test_an_error_without_a_signal_still_shows_its_traceback(monkeypatch) -> None:
    import birefnet_edge.cli as cli_module

    def command(args, standalone_mode):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli_module, "app", command)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["distill"])


# --- issue 19: one output-path check, one bounded-number rule (usage errors exit 2), checks before slow work ---


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--steps", "0", "--steps 0 is out of range: it must be 1 or more"),
        ("--batch-size", "0", "--batch-size 0 is out of range: it must be 1 or more"),
        ("--size", "99968", "--size 99968 is out of range: it must be 64..4096"),
        ("--loss", "bce=-5", "--loss bce -5 is out of range"),
        ("--augment", "flip=2", "--augment flip 2 is out of range: it must be 0..1"),
    ],
)
def test_distill_numbers_out_of_range_exit_2_like_every_command(
    option: str, value: str, message: str, photo: Path, tmp_path: Path, cli: Cli
) -> None:
    args = ["distill", "--teacher", "random:birefnet_tiny", "--student", "student_tiny", "--images", tmp_path]
    args += ["--out", tmp_path / "run", "--steps", "1", "--size", "64", option, value]
    code, text = cli(*args)
    assert code == 2 and message in _one_error_line(text)
    assert not (tmp_path / "run").exists()


@pytest.fixture
def no_gate(monkeypatch):
    """Fail the test if the parity gate (the slow work) starts."""
    import birefnet_edge.parity as parity

    monkeypatch.setattr(parity, "run_parity", lambda *a, **k: pytest.fail("the gate ran"))


@pytest.mark.parametrize("where", ["folder", "proc", "under-a-file"])
def test_parity_junit_path_is_checked_before_the_gate(
    where: str, onnx_artifact: Path, a_file: Path, tmp_path: Path, cli: Cli, no_gate
) -> None:
    junit = {"folder": tmp_path, "proc": Path("/proc/j.xml"), "under-a-file": a_file / "j.xml"}[where]
    code, text = cli("parity", onnx_artifact, "--synthetic", "1", "--junit", junit)
    assert code == 1 and f"--junit {junit}" in _one_error_line(text)


def test_parity_batch_outside_the_artifacts_range_is_a_usage_error(onnx_artifact: Path, cli: Cli, no_gate) -> None:
    from birefnet_edge.manifest import read_manifest

    rng = read_manifest(onnx_artifact).get_profile().batch
    code, text = cli("parity", onnx_artifact, "--synthetic", "1", "--batch", "1", "--batch", "99")
    line = _one_error_line(text)
    assert code == 2 and f"--batch: 99 is outside {onnx_artifact.name}'s range {rng.min}..{rng.max}" in line


@pytest.mark.parametrize(("option", "value", "code"), [("--junit", "/proc/j.xml", 1), ("--batch", "99", 2)])
def test_pipeline_junit_and_batch_are_checked_before_the_export(
    option: str, value: str, code: int, tmp_path: Path, cli: Cli, monkeypatch
) -> None:
    import birefnet_edge.model as model_package

    monkeypatch.setattr(model_package, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    args = ["pipeline", "--weights", "random:birefnet_tiny", "--target", "onnx-fp32", "--out", tmp_path / "o"]
    got, text = cli(*args, option, value)
    assert got == code and option in _one_error_line(text)


@pytest.mark.parametrize("out", ["/proc/x", "s3://bucket/x", "/tmp/" + "/".join(["x" * 200] * 25)])
def test_export_and_predict_out_that_cannot_be_a_folder_fail_before_the_model_loads(
    out: str, photo: Path, cli: Cli, monkeypatch
) -> None:
    import birefnet_edge.model as model_package

    monkeypatch.setattr(model_package, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    code, text = cli("export", "--weights", "random:birefnet_tiny", "--target", "onnx-fp32", "--out", out)
    assert code == 1 and "--out" in _one_error_line(text) and "report this as a bug" not in text
    code, text = cli("predict", "random:birefnet_tiny", photo, "--out", out)
    assert code == 1 and "--out" in _one_error_line(text)
    assert not Path("s3:").exists()


def test_eval_junit_path_is_checked_before_the_models_run(photo: Path, cli: Cli, monkeypatch) -> None:
    import birefnet_edge.model as model_package

    monkeypatch.setattr(model_package, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    code, text = cli("eval", "random:birefnet_tiny", "--images", photo.parent, "--junit", "/proc/j.xml")
    assert code == 1 and "--junit /proc/j.xml: cannot write in /proc" in _one_error_line(text)


def test_a_forked_child_ended_by_sigterm_dies_quietly(capfd) -> None:
    """Libraries fork helpers that inherit our SIGTERM handler and end them with SIGTERM (OpenVINO's telemetry
    sender, when it outlives its timeout without a network): they printed a ``_Terminated`` traceback."""
    import multiprocessing
    import os
    import signal
    import time

    import birefnet_edge.cli as cli_module

    previous = signal.signal(signal.SIGTERM, cli_module._raise_terminated)
    owner = cli_module._Terminated.owner
    cli_module._Terminated.owner = os.getpid()
    try:
        child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
        child.start()
        time.sleep(0.5)  # the child is in its sleep
        child.terminate()
        child.join(30)
    finally:
        signal.signal(signal.SIGTERM, previous)
        cli_module._Terminated.owner = owner
    assert child.exitcode == -signal.SIGTERM
    assert "Traceback" not in capfd.readouterr().err
    assert not cli_module._Terminated.received  # the parent was not told to stop


# Last in the file: the CoreML artifact is built by the other pytest-xdist worker (tests/conftest.py), and
# this worker reaches the file right after its own prebuild; the tests above do not wait for it.
def test_a_gate_that_checked_nothing_exits_1_unless_skips_are_allowed(
    coreml_artifact, unrunnable, tmp_path: Path, cli: Cli
) -> None:
    why = unrunnable("coreml")
    if why is None:
        pytest.skip("CoreML executes on this machine (macOS): there is no platform skip to check")
    code, text = cli("parity", coreml_artifact, "--synthetic", "1", "--batch", "1", "--report", tmp_path / "q")
    assert code == 1 and "could be checked on this machine" in text and "--allow-skip" in text, text
    args = ("--synthetic", "1", "--batch", "1", "--report", tmp_path / "r", "--allow-skip")
    code, text = cli("parity", coreml_artifact, *args)
    assert code == 0, text
    result = json.loads((tmp_path / "r" / "results.json").read_text())["parity"][0]
    assert (result["status"], result["skip_kind"]) == ("SKIPPED", "platform") and re.search(why, result["reason"])
