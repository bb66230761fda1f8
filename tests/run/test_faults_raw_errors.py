"""The fault suite (issue 15), part 3 of docs/RELIABILITY.md's table: late or raw errors (models that do not fit,
impossible headers, unforeseen errors, writes that fail).

Each case asserts the message (one line, naming the file, no traceback at default verbosity) and, where
a run happens, the submission (valid: the columns, every tomo_id once, each row all -1 or a finite
point). Tomograms are tiny uint8/float volumes built here; the models are the demo detectors (and a few
hand-made ONNX files with the wrong shapes). Most runs are in-process; a few go through the command
line where the exit code and stderr are the point. Helpers: tests/run/fault_helpers.py.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from inference.cli.main import main as cli_main
from inference.common import atomic
from inference.common.errors import EngineError, WriteError
from inference.manifest.parse import load_manifest
from inference.run import runner
from inference.run.runner import run_predict
from inference.synth.demo_models import avgpool_model
from tests.run.fault_helpers import (
    assert_valid,
    cfg,
    error_line,
    lines,
    no_traceback,
    run_cli,
    tomograms,
    variant,
    volume,
    write_mrc,
)


def _squeezed_model(path: Path) -> Path:
    """(N,1,D,H,W) -> (N,D/16,H/16,W/16): rank 4 for a 3d member."""
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, "D", "H", "W"])
    out = helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["N", "d", "h", "w"])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [helper.make_node("AveragePool", ["input"], ["p"], kernel_shape=[16] * 3, strides=[16] * 3),
             helper.make_node("Squeeze", ["p", "axes"], ["heatmap"])]
    graph = helper.make_graph(nodes, "squeezed", [inp], [out], initializer=[axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("change,needle", [
    ({"stride": 8, "patch": [64, 128, 128]}, "cells, a stride of 16, 16, 16, but the manifest says stride 8"),
    ({"model": "avgpool8.onnx"}, "a stride of 8, 8, 8, but the manifest says stride 16"),
    ({"model": "squeezed.onnx"}, "output of rank 4"),
    ({"model": "garbage.onnx"}, "ONNX Runtime cannot load the model"),
    ({"kind": "2d", "patch": [128, 128], "slice_spacing": 32.0, "tta": ["yx"]}, "the model takes input"),
])
def test_a_model_that_does_not_fit_the_manifest_stops_at_load_in_one_line(models, tmp_path, change, needle):
    folder = tmp_path / "m"
    manifest = variant(models, folder, **change)
    onnx.save(avgpool_model(8), folder / "avgpool8.onnx")
    _squeezed_model(folder / "squeezed.onnx")
    (folder / "garbage.onnx").write_bytes(b"not a model")
    tomograms(tmp_path / "in", 2)
    with pytest.raises(EngineError) as err:
        run_predict(cfg(load_manifest(manifest).path, tmp_path / "in", tmp_path / "sub.csv"))
    text = str(err.value)
    assert needle in text and "Fix:" in text and "\n" not in text and str(folder) in text
    assert_valid(tmp_path / "sub.csv", ["tomo_0", "tomo_1"])  # written before any tomogram: all -1


def test_a_model_mismatch_through_a_worker_process_is_one_error_line(models, tmp_path):
    manifest = variant(models, tmp_path / "m", stride=8)
    tomograms(tmp_path / "in", 1)
    rc, err = run_cli("predict", "--manifest", str(manifest), "--input", str(tmp_path / "in"), "--output",
                      str(tmp_path / "sub.csv"), "--workers", "1")
    assert rc == 2
    error_line(err, str(tmp_path / "m" / "demo3d.onnx"), "member demo3d", "manifest says stride 8", "Fix:")
    assert_valid(tmp_path / "sub.csv", ["tomo_0"])


@pytest.mark.parametrize("patch,needle", [
    (lambda raw: raw.__setitem__(slice(0, 4), np.int32(-5).tobytes()), "impossible dimensions"),
    (lambda raw: raw.__setitem__(slice(0, 8), np.int32(2**30).tobytes() * 2), "does not match its header"),
    (lambda raw: raw.__setitem__(slice(92, 96), np.int32(-7).tobytes()), "negative extended header"),
    (lambda raw: raw.__setitem__(slice(12, 16), np.int32(77).tobytes()), "unknown mode 77"),
])
def test_an_mrc_with_an_impossible_header_fails_alone(models, tmp_path, caplog, patch, needle):
    ids = tomograms(tmp_path / "in", 2)
    path = write_mrc(tmp_path / "in" / "tomo_bad.mrc", volume(seed=4))
    raw = bytearray(path.read_bytes())
    patch(raw)
    path.write_bytes(bytes(raw))
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.ERROR, "tomo_bad.mrc", needle)
    assert set(res.failures) == {"tomo_bad"}
    assert_valid(tmp_path / "sub.csv", sorted(ids + ["tomo_bad"]))
    no_traceback(caplog)


def test_an_unexpected_error_in_one_tomogram_is_one_line_and_the_traceback_is_debug(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 3)

    def factory(member):
        from inference.engines.registry import load_engine

        real = load_engine(member.model)
        calls = {"n": 0}

        def engine(batch):
            calls["n"] += 1
            if calls["n"] == 3:  # the second tomogram's window (the first call is the load check)
                raise RuntimeError("CUDA error: an illegal memory access\nwith a second line")
            return real(batch)
        return engine

    caplog.set_level(logging.DEBUG)
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"), engine_factory=factory)
    assert len(res.failures) == 1
    (msg,) = lines(caplog, logging.ERROR, "failed and is written as -1", "RuntimeError: CUDA error: an illegal "
                   "memory access")
    assert "second line" not in msg
    assert [r for r in caplog.records if r.exc_info and r.levelno == logging.DEBUG]  # -v shows it
    assert_valid(tmp_path / "sub.csv", ids)


def _fail_writes(monkeypatch, path_part: str, err: int, after: int = 0):
    """Make os.replace fail with ``err`` for targets containing ``path_part`` after ``after`` successes."""
    real = os.replace
    seen = {"n": 0}

    def replace_(src, dst, *a, **k):
        if path_part in str(dst):
            seen["n"] += 1
            if seen["n"] > after:
                raise OSError(err, os.strerror(err), str(dst))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(atomic.os, "replace", replace_)


def test_a_read_only_output_folder_is_one_line_naming_it(models, tmp_path, monkeypatch):
    tomograms(tmp_path / "in", 2)
    _fail_writes(monkeypatch, "sub.csv", errno.EROFS)
    with pytest.raises(WriteError) as err:
        run_predict(cfg(models, tmp_path / "in", tmp_path / "out" / "sub.csv"))
    text = str(err.value)
    assert text.startswith(str(tmp_path / "out")) and "Read-only file system" in text and "writable" in text
    assert not list((tmp_path / "out").glob(".sub.csv.*"))  # no temporary file left behind


def test_a_full_disk_mid_run_stops_in_one_line_and_the_rerun_resumes(models, tmp_path, monkeypatch, caplog):
    ids = tomograms(tmp_path / "in", 4)
    out = tmp_path / "sub.csv"
    _fail_writes(monkeypatch, "tomograms", errno.ENOSPC, after=2)
    with pytest.raises(WriteError, match="No space left on device.*Fix: free disk space.*rerun the same command"):
        run_predict(cfg(models, tmp_path / "in", out))
    assert_valid(out, ids)  # the last submission written stays valid
    assert len(list((tmp_path / "sub.csv.work" / "tomograms").glob("*.json"))) == 2
    monkeypatch.undo()
    caplog.set_level(logging.INFO)
    res = run_predict(cfg(models, tmp_path / "in", out))
    assert lines(caplog, logging.INFO, "resuming: 2 of 4 tomograms")
    assert not res.failures and len(res.results) == 4
    assert_valid(out, ids)


def test_an_unexpected_error_on_the_command_line_is_one_line_exit_1(models, tmp_path, monkeypatch, capsys):
    tomograms(tmp_path / "in", 1)

    def boom(cfg, **kw):
        raise RuntimeError("something nobody foresaw\nline two")

    monkeypatch.setattr(runner, "run_predict", boom)
    rc = cli_main(["-q", "predict", "--manifest", str(models), "--input", str(tmp_path / "in"), "--output",
                   str(tmp_path / "sub.csv")])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert err.strip() == ("error: RuntimeError: something nobody foresaw (an unexpected error; -v shows the "
                           "traceback)")
