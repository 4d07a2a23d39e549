"""The Ray engine of predict: the local bytes, resume, a killed worker, a corrupt image, no Ray needed to import."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from birefnet_edge.cli import main
from birefnet_edge.errors import InputError, MissingDependencyError
from birefnet_edge.predict import collect_inputs, predict_files
from birefnet_edge.predict_ray import RayOptions, Segmenter, predict_ray, ray_session
from birefnet_edge.runtime import open_runner

# 2 actors at half a CPU each leave room for the read tasks on a 2-CPU local Ray.
OPTIONS = RayOptions(workers=2, batch=2, cpus_per_worker=0.5)


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray (2 CPUs) for the module: starting Ray costs seconds."""
    ray = pytest.importorskip("ray", reason="ray is not installed (extra 'ray')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Seven images of different sizes and one corrupt file."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    for i in range(7):
        Image.fromarray((rng.random((30 + 7 * i, 60 - 4 * i, 3)) * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG not an image")
    return folder


@pytest.fixture(scope="module")
def local_outputs(onnx_artifact, photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local")
    with open_runner(onnx_artifact) as runner:
        summary = predict_files(runner, collect_inputs([photos]), out, batch=2)
    assert [p.name for p, _ in summary.failed] == ["corrupt.png"]
    return out


def _same_files(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.glob("*.png"))  # the masks and cutouts (not the job's output record)
    assert names == sorted(p.name for p in b.glob("*.png")) and len(names) == 14
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_cli_ray_engine_writes_the_local_bytes_then_skips_all(
    ray_local, onnx_artifact, photos, local_outputs, tmp_path, capsys
):
    out = tmp_path / "masks"
    args = ["predict", str(onnx_artifact), str(photos), "--out", str(out), "--engine", "ray", "--workers", "2"]
    args += ["--batch", "2", "--cpus-per-worker", "0.5"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    assert exit_info.value.code == 1  # the corrupt file fails alone, as with the local engine
    assert "wrote 7, skipped 0 already done, failed 1" in captured.out
    assert "corrupt.png: cannot read image" in captured.err and "1 input(s) could not be read" in captured.err
    _same_files(out, local_outputs)
    with pytest.raises(SystemExit) as second:
        main(args)
    assert second.value.code == 1  # the corrupt file still fails; everything else is skipped as done
    assert "wrote 0, skipped 7 already done, failed 1" in capsys.readouterr().out


def test_a_killed_worker_is_replaced_and_every_output_written(
    ray_local, onnx_artifact, photos, local_outputs, tmp_path
):
    out, marker = tmp_path / "out", tmp_path / "killed"
    summary = predict_ray(onnx_artifact, collect_inputs([photos]), out, OPTIONS, actor=_dying_segmenter(1, marker))
    assert marker.exists()  # the kill happened
    assert len(summary.written) == 7 and [p.name for p, _ in summary.failed] == ["corrupt.png"]
    assert summary.recovered == ["1 Ray worker(s) died and were restarted; their unfinished batches were redone"]
    assert "1 Ray worker(s) died" in summary.describe()
    _same_files(out, local_outputs)


def _dying_segmenter(after_batches: int, marker: Path) -> type[Segmenter]:
    """A Segmenter whose first actor to finish ``after_batches`` batches kills itself, once.

    ``marker`` is created when the kill happens, so exactly one actor dies however many restarts follow.
    The class is made here (not at module level) so Ray ships it to the workers by value.
    """

    class DyingSegmenter(Segmenter):
        def __call__(self, batch):
            if not self.restarted and self.calls >= after_batches:
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    return super().__call__(batch)
                os.close(fd)
                import ray

                ray.kill(ray.get_runtime_context().current_actor, no_restart=False)
                os._exit(1)  # if the kill has not landed yet, die the hard way: Ray sees the same crash
            return super().__call__(batch)

    return DyingSegmenter


def test_batch_outside_the_artifact_range_fails_before_ray(onnx_artifact, photos, tmp_path):
    with pytest.raises(InputError, match=r"--batch 9 is outside .* \(1\.\.4\)"):
        predict_ray(onnx_artifact, collect_inputs([photos]), tmp_path, RayOptions(batch=9))


def test_without_ray_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as on a base install
    with pytest.raises(MissingDependencyError, match=r"pip install 'birefnet-edge\[ray\]'"), ray_session(OPTIONS):
        pass


def test_local_engine_refuses_ray_options(onnx_artifact, photos, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(onnx_artifact), str(photos), "--out", str(tmp_path), "--workers", "2"])
    assert exit_info.value.code == 2 and "--address and --workers need --engine ray" in capsys.readouterr().err


class _FakeRay:
    """Records how ray_session starts and stops Ray (no Ray process is started)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.initialized = False

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **kwargs) -> None:
        self.calls.append(("init", kwargs))

    def shutdown(self) -> None:
        self.calls.append(("shutdown", {}))


@pytest.mark.parametrize(
    ("options", "init"),
    [
        (RayOptions(address="10.0.0.1:6379"), {"address": "10.0.0.1:6379", "log_to_driver": False}),
        (RayOptions(workers=3, num_cpus=5), {"num_cpus": 5, "include_dashboard": False}),
    ],
)
def test_ray_session_joins_a_cluster_or_starts_a_local_ray_and_stops_after(monkeypatch, options, init):
    fake = _FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setitem(sys.modules, "ray.data", object())
    with ray_session(options) as ray:
        assert ray is fake and fake.calls == [("init", init)]
    assert fake.calls[-1] == ("shutdown", {})
    fake.calls.clear()
    fake.initialized = True  # a Ray this process already started is used as it is and left running
    with ray_session(options):
        pass
    assert fake.calls == []


def _serve_once(reply: bytes):
    """A listening socket that answers the first connection with ``reply``; returns its address."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(64)
        conn.sendall(reply)
        conn.close()
        server.close()

    threading.Thread(target=answer, daemon=True).start()
    return f"127.0.0.1:{server.getsockname()[1]}"


def test_an_address_where_no_ray_answers_is_one_line_in_seconds() -> None:
    """Issue 19, item 13: Ray itself retries for ~24 s, then raises a ConnectionError traceback."""
    import socket
    import time

    from birefnet_edge.predict_ray import check_address

    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there now
    started = time.perf_counter()
    with pytest.raises(InputError, match=rf"--address 127.0.0.1:{port}: nothing answers there .*ray start --head"):
        check_address(f"127.0.0.1:{port}")
    web = _serve_once(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    with pytest.raises(InputError, match="something answers there, but not a Ray cluster"):
        check_address(web)
    assert time.perf_counter() - started < 10
    check_address(_serve_once(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])))  # an HTTP/2 SETTINGS frame, as gRPC sends
    check_address("auto")  # left to Ray


def test_a_uri_out_is_refused_before_the_artifact_opens(tmp_path: Path) -> None:
    """Issue 19, item 14: typer's Path folds s3://bucket/x into s3:/bucket/x, which slipped past the URI check."""
    with pytest.raises(InputError, match="URIs are not supported"):
        predict_ray(tmp_path / "no-artifact", [], Path("s3://bucket/x"), RayOptions())
    assert not Path("s3:").exists()
