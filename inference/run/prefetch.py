"""Loading ahead: :func:`prefetched` loads item k+1 in a background thread while the caller works on k
(the in-process backend's read-ahead; worker processes and Ray actors read ahead their own way)."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from inference.run.device_handoff import DeviceHandoff

SENTINEL = object()


@dataclass(frozen=True)
class _Raise:
    exc: BaseException


def prefetched(items: Iterable, load_fn: Callable, depth: int = 1,
               handoff: DeviceHandoff | None = None) -> Iterator[tuple[object, object, BaseException | None]]:
    """Yield ``(item, load_fn(item) or None, error or None)`` with up to ``depth`` items loaded ahead
    in a background thread, so loading (decode, resample) overlaps the consumer's work.

    Memory stays bounded: at most ``depth`` loaded items wait besides the one being consumed. With a
    ``handoff`` (a GPU context's :meth:`Context.handoff`) the loads run on its stream and the consumer's
    stream waits for each before it is yielded.
    """
    handoff = handoff or DeviceHandoff(np)
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def producer():
        try:
            for item in items:
                if stop.is_set():
                    break
                try:
                    q.put((item, *handoff.produce(load_fn, item), None))
                except Exception as exc:  # handed to the consumer, which records the tomogram as failed
                    q.put((item, None, None, exc))
        except BaseException as exc:  # the item source itself failed (or was interrupted): re-raised below
            q.put(_Raise(exc))
        finally:
            q.put(SENTINEL)

    thread = threading.Thread(target=producer, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            got = q.get()
            if got is SENTINEL:
                break
            if isinstance(got, _Raise):
                raise got.exc
            item, value, event, error = got
            handoff.consume(event)
            yield item, value, error
    finally:
        stop.set()
        # unblock a producer waiting on a full queue, then let it finish
        while thread.is_alive():
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
