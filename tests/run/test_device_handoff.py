"""inference.run.device_handoff: the loading thread's stream and the hand-over event, with a stand-in CuPy."""

from __future__ import annotations

import threading
import types

import numpy as np

from inference.run.device_handoff import DeviceHandoff, free_pool
from inference.run.prefetch import prefetched


class FakeCupy:
    """Records what the hand-off asks of CuPy: streams entered (per thread), events recorded and waited on."""

    def __init__(self):
        self.log, self.local = [], threading.local()
        fake = self

        class Stream:
            def __init__(self, non_blocking=False):
                self.non_blocking, self.name = non_blocking, f"side{len(fake.log)}"

            def __enter__(self):
                fake.local.current = self.name
                return self

            def __exit__(self, *exc):
                fake.local.current = "null"

            def record(self):
                fake.log.append(("record", self.name, threading.current_thread().name))
                return f"event@{self.name}"

            def wait_event(self, event):
                fake.log.append(("wait", self.name, event, threading.current_thread().name))

        def get_current_stream():
            s = Stream()
            s.name = getattr(fake.local, "current", "null")
            return s

        pool = types.SimpleNamespace(free_all_blocks=lambda: fake.log.append(("free",)))
        self.cuda = types.SimpleNamespace(Stream=Stream, get_current_stream=get_current_stream)
        self.get_default_memory_pool = lambda: pool

    def current(self):
        return getattr(self.local, "current", "null")


def test_numpy_is_plain():
    h = DeviceHandoff(np)
    assert h.produce(lambda x: x + 1, 1) == (2, None)
    h.consume(None)
    free_pool(np)  # nothing to do, nothing raised


def test_loads_run_on_the_side_stream_and_the_consumer_waits_for_their_event():
    cp = FakeCupy()
    h = DeviceHandoff(cp)
    seen = []

    def load(item):
        seen.append((item, cp.current()))
        return item * 10

    got = list(prefetched([1, 2, 3], load, handoff=h))
    assert [(i, v, e) for i, v, e in got] == [(1, 10, None), (2, 20, None), (3, 30, None)]
    assert {stream for _, stream in seen} == {"side0"}  # every load on the hand-off's one stream
    records = [e for e in cp.log if e[0] == "record"]
    waits = [e for e in cp.log if e[0] == "wait"]
    assert len(records) == len(waits) == 3
    assert all(r[2] == "prefetch" for r in records)  # recorded by the loading thread
    assert all(w[1] == "null" and w[2] == "event@side0" and w[3] != "prefetch" for w in waits)  # waited by the consumer


def test_a_failed_load_hands_over_no_event():
    cp = FakeCupy()

    def load(item):
        raise ValueError("bad tomogram")

    (item, value, err), = list(prefetched([7], load, handoff=DeviceHandoff(cp)))
    assert item == 7 and value is None and isinstance(err, ValueError)
    assert not [e for e in cp.log if e[0] == "wait"]


def test_free_pool_frees_the_cupy_pool():
    cp = FakeCupy()
    free_pool(cp)
    assert cp.log == [("free",)]
