"""export.tensorrt.build_engine against a fake TensorRT 10 module and a fake CUDA driver: the GPU it
builds on is ``device_id``'s, and a timing cache that TensorRT refuses is replaced, not ignored."""

from __future__ import annotations

import ctypes
import types
from pathlib import Path

import onnx
import pytest

import export.tensorrt as et
from export.errors import ExportError
from inference.synth.demo_models import avgpool_model


def fixed_onnx(path: Path) -> Path:
    model = avgpool_model(16)
    for vi, size in ((model.graph.input[0], 32), (model.graph.output[0], 2)):
        for d in vi.type.tensor_type.shape.dim[2:]:
            d.dim_value = size
    onnx.save(model, path)
    return path


class FakeDriver:
    """libcuda: cuInit, cuDeviceGet, name/attributes, primary context, cuCtxSetCurrent; records calls."""

    def __init__(self, log):
        self.log = log

    def cuInit(self, flags):  # noqa: N802 (the driver's names)
        return 0

    def cuDeviceGet(self, dev, ordinal):  # noqa: N802
        ctypes.cast(dev, ctypes.POINTER(ctypes.c_int))[0] = ordinal
        return 0

    def cuDeviceGetName(self, buf, size, dev):  # noqa: N802
        ctypes.memmove(buf, b"Tesla T4\0", 9)
        return 0

    def cuDeviceGetAttribute(self, out, attr, dev):  # noqa: N802
        ctypes.cast(out, ctypes.POINTER(ctypes.c_int))[0] = {75: 7, 76: 5}[attr]
        return 0

    def cuDevicePrimaryCtxRetain(self, ctx, dev):  # noqa: N802
        self.log.append(("retain", dev.value))
        ctypes.cast(ctx, ctypes.POINTER(ctypes.c_void_p))[0] = 0x1000 + dev.value
        return 0

    def cuCtxSetCurrent(self, ctx):  # noqa: N802
        self.log.append(("current", ctx.value))
        return 0


def fake_tensorrt(log, *, accept_cache=lambda data: True):
    """Just enough of TensorRT 10's Python API for build_engine."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.16.1.11"
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace()  # TensorRT 10: explicit batch is the default
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = types.SimpleNamespace(FP16="fp16")

    class Tensor:
        def __init__(self, name, shape):
            self.name, self.shape = name, shape

    class Network:
        num_inputs = num_outputs = 1

        def get_input(self, i):
            return Tensor("input", (-1, 1, 32, 32, 32))

        def get_output(self, i):
            return Tensor("heatmap", (-1, 1, 2, 2, 2))

    class Cache:
        def __init__(self, data):
            self.data = data

        def serialize(self):
            return b"timing cache v2"

    class Config:
        def __init__(self):
            self.cache = None

        def set_memory_pool_limit(self, pool, size):
            pass

        def set_flag(self, flag):
            pass

        def add_optimization_profile(self, profile):
            pass

        def create_timing_cache(self, data):
            return Cache(bytes(data))

        def set_timing_cache(self, cache, ignore_mismatch):
            log.append(("set_timing_cache", cache.data, ignore_mismatch))
            ok = accept_cache(cache.data)
            if ok:
                self.cache = cache
            return ok

        def get_timing_cache(self):
            return self.cache

    class Builder:
        def __init__(self, logger):
            log.append("Builder")

        def create_network(self, flags):
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return types.SimpleNamespace(set_shape=lambda *a: None)

        def build_serialized_network(self, network, config):
            return b"serialized engine"

    trt.Builder = Builder
    trt.OnnxParser = lambda network, logger: types.SimpleNamespace(parse_from_file=lambda path: True, num_errors=0)
    return trt


@pytest.fixture
def machine(monkeypatch):
    log = []
    monkeypatch.setattr(et.ctypes, "CDLL", lambda name: FakeDriver(log))
    return log


def test_build_engine_uses_the_device_it_is_given(tmp_path, machine, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", fake_tensorrt(machine))
    sc = et.build_engine(fixed_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", device_id=1)
    # device 1's primary context is current before the builder exists
    assert machine.index(("retain", 1)) < machine.index(("current", 0x1001)) < machine.index("Builder")
    assert sc.gpu_name == "Tesla T4" and sc.compute_capability == "7.5"
    assert (tmp_path / "m.engine").read_bytes() == b"serialized engine"


def test_a_refused_timing_cache_is_replaced_by_a_new_one(tmp_path, machine, monkeypatch, caplog):
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"cache of another GPU")
    monkeypatch.setitem(__import__("sys").modules, "tensorrt",
                        fake_tensorrt(machine, accept_cache=lambda data: data == b""))
    et.build_engine(fixed_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", timing_cache=cache)
    sets = [e for e in machine if isinstance(e, tuple) and e[0] == "set_timing_cache"]
    assert sets == [("set_timing_cache", b"cache of another GPU", False), ("set_timing_cache", b"", False)]
    assert "timing cache of another TensorRT version or GPU" in caplog.text
    assert cache.read_bytes() == b"timing cache v2"  # the new cache is saved


def test_a_timing_cache_tensorrt_never_accepts_is_an_error(tmp_path, machine, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", fake_tensorrt(machine, accept_cache=lambda data: False))
    with pytest.raises(ExportError, match="refused a new timing cache"):
        et.build_engine(fixed_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", timing_cache=tmp_path / "t.cache")
