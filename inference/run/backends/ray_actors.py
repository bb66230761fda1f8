"""``predict --backend ray``: the per-tomogram pipeline on Ray actors, one per GPU or CPU share.

The driver (this process) keeps what the local backend keeps: the :class:`~inference.run.runner.Run`
(per-tomogram results written atomically, resume, the submission rewritten as results arrive) and
the task ledger (:mod:`inference.run.backends.ledger`: the progress bar, record once, the blame
rule, the restart budget, start failures); this module is the transport (``ray.wait``). Only
tomogram SOURCES (paths or URLs) go to the actors; each actor reads its tomograms itself, builds its
engines once (:func:`inference.run.tomogram.context_for`) and returns the small JSON
:class:`~inference.run.results.TomoResult`. No volume passes through the driver or the object store.

* Pull: an actor has one call in flight, ``run(task, upcoming)``: it runs ``task`` and reads
  ``upcoming`` (the tomogram it will get next) in a background thread meanwhile, so reading overlaps
  the engines and at most two tomograms are in its memory. The driver sends the next call to
  whichever actor returns first (``ray.wait``), so a slow tomogram never idles the others.
* Blame: the call in flight is the tomogram an actor was running when it died: it is charged
  with the death (retried once, then -1); the announced one goes back to the queue uncharged (the
  ledger's blame rule, with the call in flight first). An actor gets its next call only when the one
  in flight has returned, as a local worker asks for a task only with a free slot and unlike the
  in-process prefetch, on purpose: with two calls in flight a finished call's reply could be lost
  with the process, and the wrong tomogram would be charged.
* Start: an actor whose engines do not load (or that dies first) is reported in one warning and
  the run goes on with the others; only when none starts is it an error.
* Cluster: ``--ray-address`` (else ``$RAY_ADDRESS``) joins a running cluster; without either a
  small local Ray starts on this machine and stops at the end. Every node needs this package and
  the manifest's model files at the same paths (a shared file system or the container image);
  sources must be readable from the nodes (a shared file system, or URLs). The spacing CSV is read
  here and sent to the actors.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from inference.common.errors import EngineError, InputError
from inference.common.log_format import LineFormatter
from inference.run.backends.ledger import Task, TaskLedger
from inference.run.results import TomoResult

logger = logging.getLogger(__name__)

LOCAL_OBJECT_STORE_BYTES = 200 * 2**20  # results are small JSON: a local Ray needs little
START_WARN_S = 60.0     # warn about actors still waiting for resources after this long
START_FIX = "see the reason above (python -m inference doctor checks a node's set-up)"


def import_ray():
    try:
        import ray
    except ImportError:
        raise InputError(None, "--backend ray needs Ray, which is not installed",
                         "pip install 'motorfinder[ray]', or run with --backend local") from None
    return ray


def connect(ray, address: str | None) -> bool:
    """Join ``address`` (else ``$RAY_ADDRESS``) or start a small local Ray; True when started here."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        if address:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
            return True
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: no usage reporting
        ray.init(address="local", num_cpus=os.cpu_count() or 1, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                 include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise EngineError(f"cannot start or join {where} ({type(exc).__name__}: {str(exc).splitlines()[0]}). Fix: "
                          "start the head with `ray start --head` and pass its address (host:6379, or "
                          "ray://host:10001 for Ray Client), or drop --ray-address to start a local Ray") from None
    return True


@dataclass(frozen=True)
class ActorSpec:
    device: str            # "cpu" or "cuda"
    num_cpus: float
    num_gpus: float
    threads: int | None    # ONNX Runtime intra-op threads on CPU


def actor_specs(ray, cfg) -> list[ActorSpec]:
    """One actor per GPU (``devices``: 'all' = every GPU of the cluster, ids = that many), else
    ``workers`` CPU actors sharing the cluster's CPUs (at least one)."""
    resources = ray.cluster_resources()
    if cfg.devices:
        gpus = int(resources.get("GPU", 0))
        n = gpus if cfg.devices == "all" else len(cfg.devices)
        if n == 0:
            raise EngineError("--devices all: the Ray cluster has no GPU. Fix: add GPU nodes, or use --workers N "
                              "for CPU actors")
        if n > gpus:
            logger.warning("%d GPU actors asked but the Ray cluster has %d GPU(s): the rest wait for GPUs", n, gpus)
        if cfg.devices != "all":
            logger.info("Ray assigns the GPUs: --devices %s starts %d GPU actor(s)", ",".join(map(str, cfg.devices)), n)
        return [ActorSpec("cuda", num_cpus=1, num_gpus=1, threads=cfg.engine.threads)] * n
    n = max(1, cfg.workers)
    largest = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")), default=1)
    threads = cfg.engine.threads or max(1, min(int(resources.get("CPU", 1) // n), int(largest)))
    return [ActorSpec("cpu", num_cpus=threads, num_gpus=0, threads=threads)] * n


class TomogramActor:
    """One Ray actor: builds the engines once (:meth:`start`), then runs tomograms (:meth:`run`)."""

    def __init__(self, settings, spec: ActorSpec, wid: int, spacing_table, log_level: int, hook=None):
        self.settings, self.spec, self.wid, self.table, self.hook = settings, spec, wid, spacing_table, hook
        self.ctx = None
        self._ahead: tuple[int, threading.Thread, dict] | None = None  # (task index, loader, its outcome)
        handler = logging.StreamHandler()
        handler.setFormatter(LineFormatter(f"%(levelname)s actor{wid} %(name)s: %(message)s"))
        logging.basicConfig(level=log_level, handlers=[handler])

    def start(self) -> dict:
        """Build the engines: ``{"pid", "node"}``, or ``{"fatal": why}`` when nothing can run here."""
        import ray

        from inference.common.errors import one_line
        from inference.run.tomogram import context_for

        node = ray.util.get_node_ip_address()
        missing = [str(m.model) for m in self.settings.manifest.members if not m.model.exists()]
        if missing:
            return {"fatal": f"model file(s) not found on node {node}: {', '.join(missing)} (every node needs the "
                             "manifest's model files at the same paths)"}
        try:
            self.ctx = context_for(self.settings, spacing_table=self.table, device=self.spec.device,
                                   threads=self.spec.threads)
        except Exception as exc:  # nothing can run here: say why instead of dying silently
            return {"fatal": one_line(exc)}
        self.handoff = self.ctx.handoff()  # on a GPU: reads ahead on their own stream, handed over by an event
        return {"pid": os.getpid(), "node": node}

    def _load(self, task: Task) -> dict:
        from inference.run.tomogram import load_task

        try:
            loaded, event = self.handoff.produce(lambda t: load_task(t, self.ctx), task)
            return {"loaded": loaded, "event": event}
        except Exception as exc:  # recorded as a failed tomogram by run()
            return {"error": exc}

    def _read_ahead(self, task: Task) -> None:
        outcome: dict = {}
        thread = threading.Thread(target=lambda: outcome.update(self._load(task)), name="read-ahead", daemon=True)
        thread.start()
        self._ahead = (task.index, thread, outcome)

    def _take(self, task: Task) -> dict:
        """``task`` loaded: by the read-ahead thread when it was announced, else now."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            index, thread, outcome = ahead
            thread.join()
            if index == task.index:
                return outcome
        return self._load(task)

    def run(self, task: Task, upcoming: Task | None) -> tuple[int, str]:
        """Run ``task`` (read ahead if it was announced) while reading ``upcoming`` in the background."""
        from inference.run.tomogram import run_task

        outcome = self._take(task)
        self.handoff.consume(outcome.get("event"))
        if upcoming is not None:
            self._read_ahead(upcoming)
        if self.hook is not None and "error" not in outcome:
            self.hook(task.name, task.attempt)
        result = run_task(task, outcome.pop("loaded", None), outcome.get("error"), self.ctx)
        return task.index, result.to_json()


@dataclass
class _Actor:
    wid: int
    spec: ActorSpec
    handle: object
    start_ref: object
    born: float
    started: bool = False
    running: tuple[int, object] | None = None  # (task index, ref) of the call in flight
    upcoming: Task | None = None  # announced to the actor with that call: its next task

    @property
    def where(self) -> str:
        return f"{'GPU' if self.spec.device == 'cuda' else 'CPU'} actor {self.wid}"


def run_ray(run, planner, on_workers: Callable[[int], None] | None = None, actor_hook: Callable | None = None) -> None:
    """Run ``run.pending`` on Ray actors, recording every result in ``run`` (see the module docstring).

    ``actor_hook(tomo_id, attempt)`` runs on the actor before each tomogram's engines (tests: crashes).
    """
    ray = import_ray()
    started_here = connect(ray, run.cfg.ray_address)
    try:
        RayActors(ray, run, planner, on_workers, actor_hook).loop()
    finally:
        if started_here:
            ray.shutdown()


class RayActors:
    """The driver's side: starts the actors, sends each its next call, buries the dead ones (module docstring)."""

    def __init__(self, ray, run, planner, on_workers, hook):
        self.ray, self.run, self.hook = ray, run, hook
        self.remote = ray.remote(max_restarts=0)(TomogramActor)
        self.token = uuid.uuid4().hex[:8]
        self.specs = actor_specs(ray, run.cfg)
        self.actors: dict[int, _Actor] = {}
        self.owner: dict = {}  # ref -> (actor, "start" | "run")
        self.next_wid = 0
        self.warned_waiting = False
        self.ledger = TaskLedger(run, planner, workers=len(self.specs), kind="Ray actor", start_fix=START_FIX,
                                 on_workers=on_workers)
        logger.info("Ray: %d %s actor(s) (%s CPU, %s GPU each)", len(self.specs), self.specs[0].device,
                    self.specs[0].num_cpus, self.specs[0].num_gpus)

    # -- actors --------------------------------------------------------------------------------
    def start(self, spec: ActorSpec) -> None:
        wid, self.next_wid = self.next_wid, self.next_wid + 1
        handle = self.remote.options(name=f"motorfinder-{self.token}-{wid}", num_cpus=spec.num_cpus,
                                     num_gpus=spec.num_gpus, scheduling_strategy="SPREAD").remote(
            self.run.cfg, spec, wid, self.run.spacing_table, logging.getLogger().getEffectiveLevel(), self.hook)
        actor = _Actor(wid=wid, spec=spec, handle=handle, start_ref=handle.start.remote(), born=time.monotonic())
        self.actors[wid] = actor
        self.owner[actor.start_ref] = (actor, "start")

    def give(self, actor: _Actor) -> None:
        """An idle started actor gets its announced task (or the next pending) and the one after it."""
        if not actor.started or actor.running is not None:
            return
        task, actor.upcoming = actor.upcoming, None
        if task is not None and not self.ledger.is_open(task.index):  # dropped meanwhile (the deadline)
            task = None
        task = task or self.ledger.next()
        if task is None:
            return
        actor.upcoming = self.ledger.next()
        ref = actor.handle.run.remote(task, actor.upcoming)
        actor.running = (task.index, ref)
        self.owner[ref] = (actor, "run")

    def on_start(self, actor: _Actor) -> None:
        ray = self.ray
        try:
            info = ray.get(actor.start_ref)
        except ray.exceptions.RayError as exc:
            info = {"fatal": f"it died before it was ready ({_first_line(exc)})"}
        if "fatal" in info:
            return self.bury(actor, info["fatal"])
        actor.started = True
        logger.info("actor %d ready on %s (pid %s, %s)", actor.wid, info["node"], info["pid"], actor.spec.device)
        self.ledger.started()
        self.give(actor)

    def on_done(self, actor: _Actor, ref) -> None:
        ray = self.ray
        try:
            i, text = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            return self.bury(actor, _first_line(exc))
        except ray.exceptions.RayError as exc:  # an error escaped the actor's own handling: this tomogram fails
            i = actor.running[0]
            text = TomoResult.failed(self.run.ids[i], f"Ray: {_first_line(exc)}").to_json()
        actor.running = None
        self.ledger.done(i, TomoResult.from_json(text))
        self.give(actor)

    def bury(self, actor: _Actor, why: str) -> None:
        """A dead actor (or one that cannot start): the ledger's blame rule with the call in flight first
        (a result it finished before the death still counts), then a fresh actor while the budget lasts."""
        ray = self.ray
        del self.actors[actor.wid]
        self.owner.pop(actor.start_ref, None)
        if actor.running is not None:
            self.owner.pop(actor.running[1], None)
        ray.kill(actor.handle, no_restart=True)
        upcoming = [actor.upcoming.index] if actor.upcoming is not None else []
        if not actor.started:
            self.ledger.start_failed(actor.wid, actor.where, why, held=upcoming, workers_left=len(self.actors))
            return
        culprit = []
        if actor.running is not None:
            i, ref = actor.running
            try:  # a result finished before the death still counts; then nothing was running
                got, text = ray.get(ref, timeout=30)
                self.ledger.done(got, TomoResult.from_json(text))
            except ray.exceptions.RayError:
                culprit = [i] if self.ledger.is_open(i) else []
        self.ledger.died(actor.where, why, culprit + upcoming, running=bool(culprit))
        if self.ledger.restart(why, workers_left=len(self.actors)):
            self.start(actor.spec)

    # -- the loop ------------------------------------------------------------------------------
    def loop(self) -> None:
        ray = self.ray
        try:
            for spec in self.specs:
                self.start(spec)
            while not self.ledger.finished:
                if not self.owner:
                    raise EngineError("no Ray actor is left to run the remaining tomograms")
                refs = list(self.owner)
                ready, rest = ray.wait(refs, num_returns=1, timeout=1.0)
                if ready and rest:
                    more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                    ready += more
                for ref in ready:
                    if ref not in self.owner:  # its actor was buried meanwhile
                        continue
                    actor, kind = self.owner.pop(ref)
                    if kind == "start":
                        self.on_start(actor)
                    else:
                        self.on_done(actor, ref)
                for actor in list(self.actors.values()):
                    self.give(actor)
                self.watch_starts()
        finally:
            self.ledger.close()
            for actor in self.actors.values():
                ray.kill(actor.handle, no_restart=True)

    def watch_starts(self) -> None:
        if self.warned_waiting:
            return
        waiting = [a for a in self.actors.values() if not a.started and time.monotonic() - a.born > START_WARN_S]
        if waiting:
            self.warned_waiting = True
            s = waiting[0].spec
            logger.warning("%d Ray actor(s) not started after %.0f s: the cluster may lack the resources one needs "
                           "(%s CPU, %s GPU); the run goes on with the started ones", len(waiting), START_WARN_S,
                           s.num_cpus, s.num_gpus)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
