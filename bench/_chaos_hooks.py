"""The chaos run's fault injector: a TEST HOOK (never a mode of the product), installed only by the chaos
launcher (:func:`main`), which ``bench/chaos.py`` and ``tests/run/test_chaos.py`` run instead of
``python -m inference`` with the same arguments.

The plan is a JSON file (:func:`_chaos_run.make_plan`, deterministic per seed) named by ``$MOTORFINDER_CHAOS``:
events, each fired once in the whole run (a claim file in the plan's ``state`` folder, linked into place
whole: once across processes, restarts and the resumed run; a claim whose process died before logging
the event is taken over by a later process):

* ``kill`` at a ``phase`` of the first task whose index is at least ``after``: ``read`` (while slice ``at``
  of its folder is read), ``engines`` (at its ``at``-th engine call) or ``between`` (the task received,
  nothing of it read yet). Local workers kill themselves (SIGKILL); on Ray the actor asks the driver and
  waits: the launcher's killer thread ends it with ``ray.kill``. A kill fires only while every task the
  process holds (and the one it finished last) is on its first try, so no tomogram is charged with two
  deaths (with ``--retries 1`` the second would fail it); otherwise the event waits for a later task. Once
  a process has fired a kill, no other event fires in it (a Ray actor waiting for its ``ray.kill``).
* ``fail_read``: slice ``at`` of the first task at or after ``after`` raises ``OSError(EIO)`` on that many
  reads in a row (``times``, at most the run's ``--read-retries``, so the tomogram recovers), counted in the
  state folder (a process killed between two of them leaves the rest to the next reader of that tomogram);
  one such event per tomogram in the whole run.

Everything that happened is appended to ``state/events.log`` (one line each, written before the fault).
Patched in the worker processes (``worker_entry``) and Ray workers (Ray's ``worker_process_setup_hook``):
:func:`inference.run.tomogram.load_task` and ``run_task`` (which tasks the process holds),
``inference.run.tomogram.load_engine`` (engines that count their calls) and
``inference.io.image_decoders._read_bytes`` (the read of one slice file).
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

PLAN_ENV = "MOTORFINDER_CHAOS"
KILL_WAIT_S = 60.0  # a Ray actor waits this long for the driver's ray.kill, then goes on (logged as missed)


class Injector:
    """The plan, installed in one process (worker, actor)."""

    def __init__(self, plan_path: str | Path, mode: str):
        plan = json.loads(Path(plan_path).read_text())
        self.state = Path(plan["state"])
        self.events = sorted(plan["events"], key=lambda e: e["after"])
        self.mode = mode  # "self": SIGKILL this process; "driver": ask the driver for ray.kill and wait
        self.lock = threading.RLock()
        self.held: dict[str, object] = {}  # tomo_id -> task received, not finished
        self.last_done = None  # the task finished last (its result may still be on its way)
        self.running: object | None = None  # the task whose engines run now
        self.calls = 0  # engine calls of the running task
        self.parent = os.getppid()  # a local worker's dispatcher: no kill once it is gone (the main kill)
        self.gone: set[str] = set()  # events seen claimed (by any process)
        self.dying = False  # a kill is under way here (on Ray: asked for): no other event fires in this process

    # -- bookkeeping ---------------------------------------------------------------------------
    def log(self, *words) -> None:
        fd = os.open(self.state / "events.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (" ".join(map(str, words)) + "\n").encode())
        finally:
            os.close(fd)

    def claim(self, event: dict) -> bool:
        """Take ``event`` for this process: a claim file holding this pid, linked into place whole (``os.link``
        fails when it exists). A stale claim (its process died before logging the event: a worker that
        claimed a kill the moment the main process was killed) is renamed away first, so the event fires
        later instead of being lost."""
        self.gone.add(event["id"])
        path = self.state / f"claim-{event['id']}"
        if path.exists() and self.stale(event):
            try:
                os.rename(path, self.state / f"stale-{event['id']}-{os.getpid()}")
            except FileNotFoundError:
                pass  # another process took it over first; the link below decides
        tmp = self.state / f".claim-{event['id']}-{os.getpid()}"
        tmp.write_text(str(os.getpid()))
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink()

    def claimed(self, event: dict) -> bool:
        if event["id"] not in self.gone and (self.state / f"claim-{event['id']}").exists() and not self.stale(event):
            self.gone.add(event["id"])
        return event["id"] in self.gone

    def stale(self, event: dict) -> bool:
        """The claim of ``event`` was made by a process that is gone without logging the event."""
        try:
            pid = int((self.state / f"claim-{event['id']}").read_text())
        except (FileNotFoundError, ValueError):
            return False
        try:
            os.kill(pid, 0)
            return False  # alive: it fires the event or has
        except ProcessLookupError:
            pass
        except PermissionError:
            return False
        try:
            logged = (self.state / "events.log").read_text().split()
        except FileNotFoundError:
            logged = []
        under_way = [self.failing(p.name[len("failing-"):])[2] for p in self.state.glob("failing-*")]  # not logged yet
        return event["id"] not in logged and event["id"] not in under_way

    def dispatcher_alive(self) -> bool:
        """A local worker's dispatcher is still its parent (the driver serves a Ray actor's kill itself)."""
        return self.mode != "self" or os.getppid() == self.parent

    def first_tries_only(self) -> bool:
        tasks = list(self.held.values()) + ([self.last_done] if self.last_done is not None else [])
        return all(t.attempt == 0 for t in tasks)

    # A fail_read event under way lives in the state folder, not in this process: a worker killed between two
    # failed reads (or the main kill) leaves the rest to whichever process reads that tomogram next, so the
    # run fails exactly the planned reads; and a tomogram gets one fail_read event in the whole run, so the
    # reads failed in one attempt stay within --read-retries.
    def failing(self, tomo_id: str) -> tuple[int | None, int, str]:
        """(slice, reads still to fail, event id) of the fail_read event under way for ``tomo_id``, or
        (None, 0, "")."""
        try:
            at, left, eid = (self.state / f"failing-{tomo_id}").read_text().split()
        except FileNotFoundError:
            return None, 0, ""
        return int(at), int(left), eid

    def set_failing(self, tomo_id: str, at: int, left: int, eid: str) -> None:
        path = self.state / f"failing-{tomo_id}"
        if left <= 0:
            path.unlink(missing_ok=True)
            return
        tmp = self.state / f".failing-{tomo_id}-{os.getpid()}"
        tmp.write_text(f"{at} {left} {eid}")
        os.replace(tmp, path)
        (self.state / f"faulted-{tomo_id}").touch()

    def read_faulted(self, tomo_id: str) -> bool:
        return (self.state / f"faulted-{tomo_id}").exists()

    # -- the faults ----------------------------------------------------------------------------
    def at(self, phase: str, task, at: int) -> None:
        """A task reached ``phase`` (``at``: its slice or engine call): fire the first event that applies."""
        with self.lock:
            action = self._choose(phase, task, at)
        if action is not None:
            action()

    def _choose(self, phase: str, task, at: int):
        if self.dying:
            return None
        if phase == "read" and self.failing(task.tomo_id)[0] == at:
            return functools.partial(self.fail_read, task)  # a fail_read event under way: the next try
        for e in self.events:
            if e["after"] > task.index or e.get("at", 0) != at or self.claimed(e):
                continue
            if e["kind"] == "kill" and e["phase"] == phase and self.first_tries_only() and self.dispatcher_alive() \
                    and self.claim(e):
                self.dying = True
                return functools.partial(self.kill, e, task)
            if e["kind"] == "fail_read" and phase == "read" and not self.read_faulted(task.tomo_id) and self.claim(e):
                self.set_failing(task.tomo_id, at, e["times"], e["id"])
                return functools.partial(self.fail_read, task)
        return None

    def fail_read(self, task) -> None:
        with self.lock:
            at, left, eid = self.failing(task.tomo_id)
            self.set_failing(task.tomo_id, at, left - 1, eid)
        self.log("failread", eid, task.tomo_id, at, "pid", os.getpid())
        raise OSError(errno.EIO, "Input/output error (chaos)", task.tomo_id)

    def kill(self, event: dict, task) -> None:
        where = f"{event['phase']} {task.tomo_id} {event.get('at', 0)} pid {os.getpid()}"
        if self.mode == "self":
            self.log("kill", event["id"], where)
            os.kill(os.getpid(), signal.SIGKILL)
        import ray

        name = ray.get_runtime_context().get_actor_name()
        self.log("killreq", event["id"], where, name)
        tmp = self.state / f".killreq-{event['id']}"
        tmp.write_text(name)
        tmp.rename(self.state / f"killreq-{event['id']}")  # whole when the driver sees it
        time.sleep(KILL_WAIT_S)  # the driver's ray.kill ends this process meanwhile
        self.log("killmissed", event["id"], where)

    # -- the patched functions -----------------------------------------------------------------
    def load_task(self, real, task, ctx):
        with self.lock:
            self.held[task.tomo_id] = task
        self.at("between", task, 0)
        return real(task, ctx)

    def run_task(self, real, task, loaded, error, ctx):
        with self.lock:
            self.running, self.calls = task, 0
        try:
            return real(task, loaded, error, ctx)
        finally:
            with self.lock:
                self.running = None
                self.held.pop(task.tomo_id, None)
                self.last_done = task

    def engine_call(self, engine, batch):
        with self.lock:
            task = self.running
            if task is not None:
                self.calls += 1
                calls = self.calls
        if task is not None:
            self.at("engines", task, calls)
        return engine(batch)

    def read_bytes(self, real, path):
        path = Path(path)
        task = self.held.get(path.parent.name)
        number = re.match(r"slice_(\d+)", path.name)
        if task is not None and number:
            self.at("read", task, int(number.group(1)))
        return real(path)


class CountingEngine:
    """An engine whose calls go through the injector; everything else is the engine's."""

    def __init__(self, injector: Injector, engine):
        self._injector, self._engine = injector, engine

    def __call__(self, batch):
        return self._injector.engine_call(self._engine, batch)

    def __getattr__(self, name):
        return getattr(self._engine, name)


def install(plan_path: str | Path, mode: str) -> Injector:
    """Patch this process (see the module docstring)."""
    from inference.io import image_decoders as decoders
    from inference.run import tomogram

    inj = Injector(plan_path, mode)
    tomogram.load_task = functools.partial(inj.load_task, tomogram.load_task)
    tomogram.run_task = functools.partial(inj.run_task, tomogram.run_task)
    real_engine = tomogram.load_engine
    tomogram.load_engine = lambda *a, **kw: CountingEngine(inj, real_engine(*a, **kw))
    decoders._read_bytes = functools.partial(inj.read_bytes, decoders._read_bytes)
    return inj


def chaos_worker(spec, settings, conn) -> None:
    """``worker_entry`` of the local backend: the injector, then the real worker."""
    from inference.run.backends.local_worker import worker_main

    install(os.environ[PLAN_ENV], "self")
    worker_main(spec, settings, conn)


def setup_ray_worker() -> None:
    """Ray's ``worker_process_setup_hook``: every Ray worker process of the chaos run gets the injector."""
    install(os.environ[PLAN_ENV], "driver")


def _killer(state: Path) -> None:
    """The driver's side on Ray: end every actor that asks for it with ``ray.kill``."""
    import ray

    done: set[str] = set()
    while True:
        for req in sorted(state.glob("killreq-*")):
            eid = req.name.split("-", 1)[1]
            if eid in done or (state / f"killed-{eid}").exists() or (state / f"killmissed-{eid}").exists():
                continue  # served already (also by the killed run's driver)
            done.add(eid)
            try:
                ray.kill(ray.get_actor(req.read_text()), no_restart=True)
                (state / f"killed-{eid}").write_text(req.read_text())
            except ValueError:  # gone already
                (state / f"killmissed-{eid}").write_text(req.read_text())
        time.sleep(0.02)


def main(argv: list[str]) -> int:
    """``<plan.json> predict ...``: the CLI with the injector in its workers (or actors, with ``--backend ray``)."""
    plan_path, args = argv[0], argv[1:]
    os.environ[PLAN_ENV] = str(Path(plan_path).absolute())
    backend = args[args.index("--backend") + 1] if "--backend" in args else "local"
    if backend == "ray":
        import logging

        import ray

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(address="local", num_cpus=os.cpu_count() or 1, object_store_memory=200 * 2**20,
                 include_dashboard=False, logging_level=logging.WARNING,
                 runtime_env={"worker_process_setup_hook": "_chaos_hooks.setup_ray_worker",
                              "env_vars": {PLAN_ENV: os.environ[PLAN_ENV]}})
        state = Path(json.loads(Path(plan_path).read_text())["state"])
        threading.Thread(target=_killer, args=(state,), name="chaos-killer", daemon=True).start()
    else:
        from inference.run import runner

        runner.run_predict = functools.partial(runner.run_predict, worker_entry=chaos_worker)
    from inference.cli.main import main as cli

    return cli(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
