"""export.tensorrt: sidecar, cache key, mismatch decision and batch profile in pure Python; the
engine build itself only where TensorRT and a GPU are present (skipped otherwise).

``ensure_engine`` is driven with an injected runtime environment and a fake builder that writes an
engine file and its sidecar the way :func:`build_engine` does, so every branch of the decision runs here.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import onnx
import pytest

from export.tensorrt import check_profile_input, onnx_io
from export.tensorrt_cache import cache_key, ensure_engine
from inference.common.errors import InputError
from inference.common.file_hash import sha256_file
from inference.engines.tensorrt_sidecar import (
    SIDECAR_FORMAT,
    BatchProfile,
    EngineSidecar,
    RuntimeEnv,
    TensorInfo,
    mismatch_reasons,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from inference.synth.demo_models import avgpool_model

H100 = RuntimeEnv("10.7.0", "NVIDIA H100 80GB HBM3", "9.0")
T4 = RuntimeEnv("10.7.0", "Tesla T4", "7.5")


def fixed_onnx(path: Path, size: int = 32) -> Path:
    """The demo average pool with its spatial axes fixed, like an exported member."""
    model = avgpool_model(16)
    for vi in (model.graph.input[0], model.graph.output[0]):
        dims = vi.type.tensor_type.shape.dim
        for d, v in zip(dims[2:], [size if vi.name == "input" else size // 16] * 3):
            d.dim_value = v
    onnx.save(model, path)
    return path


def make_sidecar(onnx_path: Path, engine: Path, env: RuntimeEnv = H100, fp16=False, batch=BatchProfile(1, 2, 4)):
    return EngineSidecar(
        tensorrt_version=env.tensorrt_version, gpu_name=env.gpu_name, compute_capability=env.compute_capability,
        onnx_file=onnx_path.name, onnx_sha256=sha256_file(onnx_path), engine_sha256=sha256_file(engine), fp16=fp16,
        batch_profile=batch, workspace_gb=4.0, inputs=(TensorInfo("input", (-1, 1, 32, 32, 32)),),
        outputs=(TensorInfo("heatmap", (-1, 1, 2, 2, 2)),), built_at="2025-01-01T00:00:00Z",
        metadata={"arch": "avgpool"})


class FakeBuilder:
    """Stands in for build_engine: writes an 'engine' and its sidecar for the given environment."""

    def __init__(self, env: RuntimeEnv):
        self.env = env
        self.calls = []

    def __call__(self, onnx_path, engine_path, *, fp16, batch, workspace_gb, timing_cache, device_id):
        self.calls.append((Path(engine_path), fp16, batch, timing_cache))
        Path(engine_path).write_bytes(f"engine for {self.env} {fp16} {batch}".encode())
        sc = make_sidecar(Path(onnx_path), Path(engine_path), self.env, fp16, batch)
        write_sidecar(engine_path, sc)
        return sc


# --------------------------------------------------------------------------- batch profile


def test_batch_profile_parsing():
    assert BatchProfile.parse("1:2:4") == BatchProfile(1, 2, 4)
    assert BatchProfile.parse(" 2:2:8 ") == BatchProfile(2, 2, 8)
    assert BatchProfile.parse("4") == BatchProfile(4, 4, 4)
    assert str(BatchProfile(1, 2, 4)) == "1:2:4"
    assert BatchProfile(1, 2, 4).shapes((1, 32, 64, 64)) == ((1, 1, 32, 64, 64), (2, 1, 32, 64, 64),
                                                             (4, 1, 32, 64, 64))
    for bad in ("0:1:2", "4:2:1", "1:2", "a:b:c", "", "1:2:3:4", "-1:1:1"):
        with pytest.raises(InputError, match="MIN:OPT:MAX"):
            BatchProfile.parse(bad)


# --------------------------------------------------------------------------- sidecar


def test_sidecar_round_trip_and_format(tmp_path):
    onnx_path = fixed_onnx(tmp_path / "m.onnx")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine")
    sc = make_sidecar(onnx_path, engine)
    path = write_sidecar(engine, sc)
    assert path == tmp_path / "m.engine.json" == sidecar_path(engine)
    data = json.loads(path.read_text())
    assert list(data) == ["format", "format_version", "tensorrt_version", "gpu_name", "compute_capability",
                          "onnx_file", "onnx_sha256", "engine_sha256", "fp16", "batch_profile", "workspace_gb",
                          "inputs", "outputs", "built_at", "metadata"]
    assert data["format"] == SIDECAR_FORMAT and data["batch_profile"] == {"min": 1, "opt": 2, "max": 4}
    assert data["inputs"] == [{"name": "input", "shape": [-1, 1, 32, 32, 32], "dtype": "float32"}]
    assert read_sidecar(engine) == sc


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.pop("gpu_name"), "'gpu_name' missing"),
    (lambda d: d.update(format="other"), "not a motorfinder-tensorrt-sidecar"),
    (lambda d: d.update(format_version=2), "format_version 2"),
    (lambda d: d.update(onnx_sha256="abc"), "'onnx_sha256' is not a sha256"),
    (lambda d: d.update(fp16="yes"), "'fp16' must be true or false"),
    (lambda d: d.update(batch_profile={"min": 4, "opt": 2, "max": 1}), "MIN:OPT:MAX"),
    (lambda d: d.update(inputs=[{"name": "input", "shape": [0, 1]}]), r"'inputs\[0\]'"),
    (lambda d: d.update(metadata={"a": 1}), "'metadata' must map strings"),
])
def test_bad_sidecars_name_the_file_and_key(tmp_path, edit, match):
    onnx_path = fixed_onnx(tmp_path / "m.onnx")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine")
    data = make_sidecar(onnx_path, engine).to_dict()
    edit(data)
    sidecar_path(engine).write_text(json.dumps(data))
    with pytest.raises(InputError, match=match) as exc:
        read_sidecar(engine)
    assert str(exc.value).startswith(str(sidecar_path(engine)))


def test_missing_or_broken_sidecar(tmp_path):
    with pytest.raises(InputError, match="sidecar not found"):
        read_sidecar(tmp_path / "m.engine")
    sidecar_path(tmp_path / "m.engine").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_sidecar(tmp_path / "m.engine")


# --------------------------------------------------------------------------- cache key, mismatch


def test_cache_key_changes_with_every_input():
    base = cache_key("a" * 64, H100, False, BatchProfile(1, 2, 4))
    assert base == cache_key("a" * 64, H100, False, BatchProfile(1, 2, 4)) and len(base) == 16
    others = [cache_key("b" * 64, H100, False, BatchProfile(1, 2, 4)),
              cache_key("a" * 64, T4, False, BatchProfile(1, 2, 4)),
              cache_key("a" * 64, replace(H100, tensorrt_version="10.8.0"), False, BatchProfile(1, 2, 4)),
              cache_key("a" * 64, H100, True, BatchProfile(1, 2, 4)),
              cache_key("a" * 64, H100, False, BatchProfile(1, 4, 8))]
    assert len({base, *others}) == 6


def test_mismatch_reasons_name_each_difference(tmp_path):
    onnx_path = fixed_onnx(tmp_path / "m.onnx")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine")
    sc = make_sidecar(onnx_path, engine)
    ok = dict(onnx_sha256=sha256_file(onnx_path), env=H100, fp16=False, batch=BatchProfile(1, 2, 4),
              engine_sha256=sha256_file(engine))
    assert mismatch_reasons(sc, **ok) == []
    cases = {
        "another ONNX": dict(onnx_sha256="f" * 64),
        "built with TensorRT 10.7.0, running 10.8.0": dict(env=replace(H100, tensorrt_version="10.8.0")),
        "built for compute capability 9.0 (NVIDIA H100 80GB HBM3), this GPU is 7.5": dict(env=T4),
        "fp16=False, wanted fp16=True": dict(fp16=True),
        "batch profile 1:2:4, wanted 1:4:8": dict(batch=BatchProfile(1, 4, 8)),
        "the engine file does not match its sidecar": dict(engine_sha256="0" * 64),
    }
    for text, change in cases.items():
        reasons = mismatch_reasons(sc, **{**ok, **change})
        assert any(text in r for r in reasons), (text, reasons)


def test_onnx_io_and_profile_input(tmp_path):
    inputs, outputs, meta = onnx_io(fixed_onnx(tmp_path / "m.onnx"))
    assert inputs == (TensorInfo("input", (-1, 1, 32, 32, 32)),)
    assert outputs == (TensorInfo("heatmap", (-1, 1, 2, 2, 2)),)
    assert meta["arch"] == "avgpool"
    assert check_profile_input(inputs, "m.onnx") == inputs[0]
    onnx.save(avgpool_model(16), tmp_path / "dyn.onnx")  # spatial axes symbolic: no fixed patch
    dyn_inputs, _, _ = onnx_io(tmp_path / "dyn.onnx")
    with pytest.raises(InputError, match="fixed channel/spatial axes"):
        check_profile_input(dyn_inputs, tmp_path / "dyn.onnx")


# --------------------------------------------------------------------------- ensure_engine decisions


def test_ensure_engine_builds_then_reuses_the_cache(tmp_path):
    onnx_path = fixed_onnx(tmp_path / "m.onnx")
    cache = tmp_path / "cache"
    build = FakeBuilder(H100)
    first = ensure_engine(onnx_path, None, cache, env=H100, builder=build)
    assert first.built and first.path.parent == cache and first.path.name.startswith("m-")
    assert build.calls[0][3] == cache / "tensorrt.timing-cache"
    second = ensure_engine(onnx_path, None, cache, env=H100, builder=build)
    assert not second.built and second.path == first.path and "cache" in second.reason
    assert len(build.calls) == 1


def test_ensure_engine_uses_a_matching_shipped_engine(tmp_path):
    onnx_path = fixed_onnx(tmp_path / "m.onnx")
    shipped = tmp_path / "m.engine"
    FakeBuilder(H100)(onnx_path, shipped, fp16=True, batch=BatchProfile(1, 2, 4), workspace_gb=4,
                      timing_cache=None, device_id=0)
    build = FakeBuilder(H100)
    res = ensure_engine(onnx_path, shipped, tmp_path / "cache", fp16=True, env=H100, builder=build)
    assert res.path == shipped and not res.built and build.calls == []


@pytest.mark.parametrize("change, why", [
    (dict(env=T4), "built for compute capability 9.0 (NVIDIA H100 80GB HBM3), this GPU is 7.5"),
    (dict(env=replace(H100, tensorrt_version="10.9.0")), "built with TensorRT 10.7.0, running 10.9.0"),
    (dict(fp16=True), "fp16=False, wanted fp16=True"),
    (dict(batch=BatchProfile(2, 4, 8)), "batch profile 1:2:4, wanted 2:4:8"),
])
def test_ensure_engine_rebuilds_into_the_cache_on_mismatch(tmp_path, change, why):
    onnx_path = fixed_onnx(tmp_path / "m.onnx")
    shipped = tmp_path / "m.engine"
    FakeBuilder(H100)(onnx_path, shipped, fp16=False, batch=BatchProfile(1, 2, 4), workspace_gb=4,
                      timing_cache=None, device_id=0)
    kw = {"env": H100, **change}
    build = FakeBuilder(kw["env"])
    res = ensure_engine(onnx_path, shipped, tmp_path / "cache", builder=build, **kw)
    assert res.built and res.path.parent == tmp_path / "cache" and why in res.reason
    assert shipped.read_bytes().startswith(b"engine for")  # the shipped engine is left alone
    again = ensure_engine(onnx_path, shipped, tmp_path / "cache", builder=build, **kw)
    assert not again.built and again.path == res.path and why in again.reason


def test_ensure_engine_rebuilds_when_the_onnx_or_the_engine_changed(tmp_path):
    onnx_path = fixed_onnx(tmp_path / "m.onnx")
    shipped = tmp_path / "m.engine"
    FakeBuilder(H100)(onnx_path, shipped, fp16=False, batch=BatchProfile(1, 2, 4), workspace_gb=4,
                      timing_cache=None, device_id=0)
    shipped.write_bytes(b"swapped engine")
    res = ensure_engine(onnx_path, shipped, tmp_path / "cache", env=H100, builder=FakeBuilder(H100))
    assert res.built and "the engine file does not match its sidecar" in res.reason
    fixed_onnx(onnx_path, size=64)  # re-exported at another patch
    res2 = ensure_engine(onnx_path, res.path, tmp_path / "cache", env=H100, builder=FakeBuilder(H100))
    assert res2.built and res2.path != res.path and "another ONNX" in res2.reason


def test_ensure_engine_needs_the_onnx(tmp_path):
    with pytest.raises(InputError, match="ONNX file not found"):
        ensure_engine(tmp_path / "none.onnx", None, tmp_path, env=H100, builder=FakeBuilder(H100))


# --------------------------------------------------------------------------- the real thing (GPU)


@pytest.mark.gpu
def test_build_engine_on_a_gpu(tmp_path):
    pytest.importorskip("tensorrt")
    from export.errors import ExportError
    from export.tensorrt import build_engine, gpu_info

    try:
        gpu_info(0)
    except ExportError as exc:
        pytest.skip(str(exc))
    onnx_path = fixed_onnx(tmp_path / "m.onnx")
    engine = tmp_path / "m.engine"
    sc = build_engine(onnx_path, engine, batch=BatchProfile(1, 2, 4), timing_cache=tmp_path / "tc")
    assert engine.stat().st_size > 0 and (tmp_path / "tc").stat().st_size > 0
    assert read_sidecar(engine) == sc and sc.inputs[0].shape == (-1, 1, 32, 32, 32)
    res = ensure_engine(onnx_path, engine, tmp_path / "cache")
    assert res.path == engine and not res.built


def test_cli_without_tensorrt_is_a_one_line_error(tmp_path, capsys):
    import importlib.util

    from export.cli import main

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here; the GPU test covers the build")
    onnx_path = fixed_onnx(tmp_path / "m.onnx")
    rc = main(["tensorrt", "--onnx", str(onnx_path), "--out", str(tmp_path / "m.engine"), "--batch", "1:2:4"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: TensorRT is not importable") and "Traceback" not in err
    assert not (tmp_path / "m.engine").exists()
    rc = main(["tensorrt", "--onnx", str(onnx_path), "--out", str(tmp_path / "m.engine"), "--batch", "4:1:1"])
    assert rc == 2 and "MIN:OPT:MAX" in capsys.readouterr().err
