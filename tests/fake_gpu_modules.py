"""Fake ``onnxruntime``, ``cupy`` and ``tensorrt_libs`` modules: the GPU runtimes' logic is tested
on a machine without them. Each fake records what the code under test asked of it.

``FakeOrt(active=...)``: ``get_available_providers()`` lists the GPU providers, but a session's
``get_providers()`` returns ``active`` (ONNX Runtime's silent fallback to the CPU when a provider's
library does not load). ``FakeCupy(gpus=...)``: CuPy's runtime with the given GPUs, streams with
pointers, and events.
"""

from __future__ import annotations

import types
from pathlib import Path


class FakeSessionOptions:
    def __init__(self):
        self.config: dict[str, str] = {}
        self.log_severity_level = 2

    def add_session_config_entry(self, key, value):
        self.config[key] = value


class FakeRunOptions:
    def __init__(self):
        self.config: dict[str, str] = {}

    def add_run_config_entry(self, key, value):
        self.config[key] = value


class FakeArg:
    def __init__(self, name, shape, type_="tensor(float)"):
        self.name, self.shape, self.type = name, shape, type_


class FakeOrt(types.ModuleType):
    """An onnxruntime whose sessions run on ``active`` whatever was asked (``["requested"]``: on the
    first provider asked for, then the CPU)."""

    def __init__(self, root: Path, *, available=("TensorrtExecutionProvider", "CUDAExecutionProvider",
                                                   "CPUExecutionProvider"),
                 active=("CPUExecutionProvider",), provider_libs=(), input_shape=(None, 1, 32, 32, 32),
                 events: list | None = None):
        super().__init__("onnxruntime")
        self.__version__ = "1.26.0"
        capi = Path(root) / "onnxruntime" / "capi"
        capi.mkdir(parents=True, exist_ok=True)
        self.__file__ = str(capi.parent / "__init__.py")
        for name in provider_libs:  # not a loadable library: ctypes says "invalid ELF header"
            (capi / f"lib{name}.so").write_bytes(b"not a shared library")
        self._available = list(available)
        self._active = list(active)
        self._input_shape = input_shape
        self.events = events if events is not None else []
        self.sessions: list[dict] = []
        self.arenas: list[tuple] = []
        self.SessionOptions = FakeSessionOptions
        self.RunOptions = FakeRunOptions
        self.GraphOptimizationLevel = types.SimpleNamespace(ORT_ENABLE_ALL=99)
        self.OrtAllocatorType = types.SimpleNamespace(ORT_ARENA_ALLOCATOR="arena")
        self.OrtMemType = types.SimpleNamespace(DEFAULT="default")
        self.OrtMemoryInfo = lambda *args: ("meminfo",) + args
        self.OrtArenaCfg = lambda cfg: ("arena_cfg", dict(cfg))

    def get_available_providers(self):
        return list(self._available)

    def preload_dlls(self):
        self.events.append("preload_dlls")

    def create_and_register_allocator_v2(self, provider, info, options, cfg):
        self.arenas.append((provider, info, options, cfg))

    def InferenceSession(self, path, sess_options=None, providers=None):  # noqa: N802 (ORT's name)
        self.events.append("InferenceSession")
        record = {"path": path, "options": sess_options, "providers": providers}
        self.sessions.append(record)
        ort = self
        first = providers[0] if isinstance(providers[0], str) else providers[0][0]
        active = [first] + (["CPUExecutionProvider"] if first != "CPUExecutionProvider" else []) \
            if ort._active == ["requested"] else list(ort._active)

        class Session:
            def get_providers(self):
                return list(active)

            def run(self, names, feeds):
                return [feeds["x"] + feeds["x"]]

            def get_inputs(self):
                return [FakeArg("input", list(ort._input_shape))]

            def get_outputs(self):
                return [FakeArg("heatmap", [None, 1, None, None, None])]

            def get_modelmeta(self):
                return types.SimpleNamespace(custom_metadata_map={"stride": "16"})

        return Session()


class FakeStream:
    def __init__(self, ptr, log):
        self.ptr, self.log = ptr, log

    def record(self):
        self.log.append(("record", self.ptr))
        return ("event", self.ptr)

    def wait_event(self, event):
        self.log.append(("wait", self.ptr, event))

    def synchronize(self):
        self.log.append(("synchronize", self.ptr))


class FakeCupy(types.ModuleType):
    """CuPy's runtime with ``gpus`` = [(name, total_bytes, (major, minor)), ...]."""

    def __init__(self, gpus=(("Tesla T4", 16 * 2**30, (7, 5)),), *, count_error: Exception | None = None):
        super().__init__("cupy")
        self.__version__ = "13.3.0"
        self.log: list = []
        self._next = [1000]
        fake = self

        class CUDARuntimeError(RuntimeError):
            pass

        def count():
            if count_error is not None:
                raise count_error
            return len(gpus)

        def props(i):
            name, total, (major, minor) = gpus[i]
            return {"name": name.encode(), "totalGlobalMem": total, "major": major, "minor": minor}

        runtime = types.SimpleNamespace(getDeviceCount=count, getDeviceProperties=props,
                                        runtimeGetVersion=lambda: 12050, driverGetVersion=lambda: 12080,
                                        CUDARuntimeError=CUDARuntimeError)

        class Device:
            def __init__(self, i=0):
                self.id = i

            def __enter__(self):
                fake.log.append(("device", self.id))
                return self

            def __exit__(self, *exc):
                return False

        def stream(non_blocking=False):
            fake._next[0] += 1
            fake.log.append(("stream", fake._next[0], non_blocking))
            return FakeStream(fake._next[0], fake.log)

        self.current = FakeStream(0, self.log)
        self.cuda = types.SimpleNamespace(runtime=runtime, Device=Device, Stream=stream,
                                          get_current_stream=lambda: fake.current)


def importer(modules: dict, events: list | None = None):
    """``import_module`` that answers from ``modules`` (a value None: ImportError) and records names."""

    def import_module(name):
        if events is not None:
            events.append(f"import {name}")
        if name in modules and modules[name] is not None:
            return modules[name]
        raise ImportError(f"No module named '{name}'")

    return import_module
