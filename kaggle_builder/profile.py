"""The runtime profile: each member measured here on synthetic tomograms, scaled to the target's real
median tomogram, and projected to its hidden test set against its limit (byu: 900 tomograms, 9 h; czii: 500,
12 h).

Rows are labelled by what they are:

* **measured**: this machine's CPU, every stage as run here; hours for the CPU machines actually used
  (``cpu_machines``, default 1);
* **projected**: a T4 = the host stages measured here (everything but the engine) + the engine at the
  T4's peak FLOP rate (fp16 / fp32: a lower bound for the engine), or at a measured GPU time per window
  (``--gpu-seconds-per-window``); hours on ``gpus`` T4s.
"""

from __future__ import annotations

import logging
import math
import os
import platform
from dataclasses import dataclass
from typing import Sequence

from inference.common.errors import InputError
from kaggle_builder.cost import T4_PEAK_FLOPS, flops_bound_seconds, member_flops, reference_windows
from kaggle_builder.target import BYU, Target

logger = logging.getLogger(__name__)

STAGES = ("read", "resample", "engine", "stitch", "decode", "fusion")
# Stages that run once per tomogram, whatever the number of members: the read, and what joins the members
# (motors: the fusion of their points; particles: the ensemble of their class maps and its decode).
SHARED_STAGES = {"motors": ("read", "fusion"), "particles": ("read", "decode")}
HOST_SEGMENT = "host stages, measured here"


class ProfileError(RuntimeError):
    """A member could not be measured."""


@dataclass(frozen=True)
class TomoMeasure:
    """One member on one tomogram, as measured (this machine)."""

    tomo_id: str
    shape: tuple[int, int, int]
    spacing: float
    seconds: dict[str, float]


@dataclass(frozen=True)
class MemberMeasure:
    name: str
    tomograms: tuple[TomoMeasure, ...]


@dataclass(frozen=True)
class MemberProfile:
    name: str
    kind: str
    windows: int                     # per reference tomogram, all TTA transforms
    flops_per_window: float | None
    flops_source: str
    stage_s: dict[str, float]        # measured here, scaled to the reference tomogram
    gpu_s_per_window: float | None   # given (--gpu-seconds-per-window)
    shared: tuple[str, ...] = SHARED_STAGES["motors"]  # the stages counted once per tomogram, not per member

    @property
    def member_s(self) -> float:
        """Measured seconds of this member's own stages (the shared ones excluded)."""
        return sum(v for k, v in self.stage_s.items() if k not in self.shared)

    @property
    def host_s(self) -> float:
        """Measured seconds of this member's own stages other than the engine."""
        return sum(v for k, v in self.stage_s.items() if k not in self.shared and k != "engine")

    def bound_s(self, peak: float) -> float | None:
        return None if self.flops_per_window is None else flops_bound_seconds(self.windows, self.flops_per_window,
                                                                              peak)


def projection_hours(per_tomogram_s: float, n_tomograms: int, workers: int) -> float:
    """Hours for ``n_tomograms`` shared by ``workers`` devices (or machines) working in parallel."""
    return per_tomogram_s * n_tomograms / workers / 3600.0


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str                        # "measured" or "projected"
    segments: dict[str, float]       # member / host -> s per tomogram
    workers: int                     # machines (CPU) or GPUs sharing the tomograms
    what: str

    @property
    def per_tomogram_s(self) -> float:
        return sum(self.segments.values())


@dataclass(frozen=True)
class ProfileReport:
    members: tuple[MemberProfile, ...]
    shared_s: dict[str, float]       # read, fusion: measured, scaled, once per tomogram
    n_tomograms: int
    gpus: int
    reference: str
    measured: tuple[MemberMeasure, ...]
    machine: str
    cpu_machines: int = 1
    budget_h: float | None = None    # None: the target's
    target: Target = BYU

    def __post_init__(self) -> None:
        if self.budget_h is None:
            object.__setattr__(self, "budget_h", self.target.budget_h)

    @property
    def host_s(self) -> float:
        return sum(self.shared_s.values()) + sum(m.host_s for m in self.members)

    def scenarios(self) -> list[Scenario]:
        cpu = {**{m.name: m.member_s for m in self.members},
               f"shared ({', '.join(self.shared_s)})": sum(self.shared_s.values())}
        machines = f"{self.cpu_machines} machine{'s' if self.cpu_machines > 1 else ''}"
        out = [Scenario(f"CPU here, {machines}", "measured", cpu, self.cpu_machines,
                        f"measured on this machine ({self.machine}), every stage, scaled to the reference tomogram; "
                        f"{machines} like it")]
        for prec in ("fp16", "fp32"):
            if all(m.flops_per_window is not None for m in self.members):
                peak = T4_PEAK_FLOPS[prec]
                seg = {m.name: m.bound_s(peak) for m in self.members}
                seg[HOST_SEGMENT] = self.host_s
                out.append(Scenario(f"T4 {prec}, {self.gpus} GPU(s)", "projected", seg, self.gpus,
                                    f"host stages measured here + engine FLOPs at the T4's {prec} peak "
                                    f"({peak / 1e12:g} TFLOP/s, a lower bound for the engine)"))
        if any(m.gpu_s_per_window is not None for m in self.members):
            seg = {}
            for m in self.members:
                if m.gpu_s_per_window is not None:
                    seg[m.name] = m.windows * m.gpu_s_per_window
                else:
                    seg[m.name + " (fp16 bound)"] = m.bound_s(T4_PEAK_FLOPS["fp16"]) or 0.0
            seg[HOST_SEGMENT] = self.host_s
            out.append(Scenario(f"T4 given s/window, {self.gpus} GPU(s)", "projected", seg, self.gpus,
                                "host stages measured here + windows x the given GPU seconds per window"))
        return out

    def host_bound_note(self) -> str | None:
        """Why the T4 fp16 and fp32 projections come out alike, when they do: the host stages (measured here)
        dwarf the engine's lower bound in both (the engine under 5 % of the fp32 total); else None."""
        bounds = [m.bound_s(T4_PEAK_FLOPS["fp32"]) for m in self.members]
        if not bounds or any(b is None for b in bounds):
            return None
        engine = sum(bounds)
        if engine >= 0.05 * (engine + self.host_s):
            return None
        return (f"host-bound: the engine's T4 bound is {engine:.3g} s per tomogram even in fp32, beside "
                f"{self.host_s:.3g} s of host stages measured here, so fp16 and fp32 project alike; the host stages "
                "(on this CPU; less with --device cuda) decide")

    def hours(self, scenario: Scenario) -> float:
        return projection_hours(scenario.per_tomogram_s, self.n_tomograms, scenario.workers)


def scale_stages(seconds: dict[str, float], *, windows_ratio: float, voxel_ratio: float,
                 resampled_ratio: float) -> dict[str, float]:
    """Stage seconds measured on one tomogram -> on the reference tomogram: engine and stitch by windows,
    read by voxels, the rest by resampled voxels."""
    out = {}
    for k, v in seconds.items():
        if k in ("engine", "stitch"):
            out[k] = v * windows_ratio
        elif k == "read":
            out[k] = v * voxel_ratio
        else:
            out[k] = v * resampled_ratio
    return out


def parse_gpu_seconds(values: Sequence[str], names: Sequence[str]) -> dict[str, float]:
    """``--gpu-seconds-per-window`` values ``S`` (every member) or ``NAME=S`` -> member -> seconds."""
    out: dict[str, float] = {}
    for v in values:
        name, sep, num = v.rpartition("=")
        try:
            sec = float(num)
        except ValueError:
            sec = -1.0
        if not sec > 0 or not math.isfinite(sec):
            raise InputError(None, f"--gpu-seconds-per-window {v!r} is not S or NAME=S with S > 0",
                             "pass e.g. --gpu-seconds-per-window x3d_m=0.05")
        if sep and name not in names:
            raise InputError(None, f"--gpu-seconds-per-window names {name!r}, not a member",
                             f"use one of: {', '.join(names)}")
        for n in ([name] if sep else names):
            out[n] = sec
    return out


def machine_description() -> str:
    return f"{platform.machine()} {os.cpu_count()} CPU core(s), {platform.system()}, Python {platform.python_version()}"


def profile_report(manifest, measured: Sequence[MemberMeasure], *, target: Target = BYU,
                   n_tomograms: int | None = None, gpus: int = 2, cpu_machines: int = 1, budget_h: float | None = None,
                   gpu_seconds: dict[str, float] | None = None, flops_table: dict | None = None,
                   machine: str | None = None) -> ProfileReport:
    """Scale the measurement to the target's reference tomogram and attach windows and FLOPs (pure: no runs).
    ``n_tomograms`` and ``budget_h`` default to the target's hidden test set and notebook budget."""
    gpu_seconds = gpu_seconds or {}
    flops_table = flops_table or {}
    t = manifest.target_spacing
    shape, spacing = target.median_shape, target.median_spacing_A
    ref_vox = math.prod(shape)
    ref_res = math.prod(n * spacing / t for n in shape)
    shared_stages = SHARED_STAGES[manifest.task]
    by_name = {mm.name: mm for mm in measured}
    members, shared_acc = [], {k: [] for k in shared_stages}
    for m in manifest.members:
        mm = by_name.get(m.name)
        if mm is None or not mm.tomograms:
            raise ProfileError(f"no measurement for member {m.name}")
        w_ref = reference_windows(m, t, shape, spacing)
        scaled = []
        for tomo in mm.tomograms:
            w = reference_windows(m, t, tomo.shape, tomo.spacing)
            scaled.append(scale_stages(
                tomo.seconds, windows_ratio=w_ref / w, voxel_ratio=ref_vox / math.prod(tomo.shape),
                resampled_ratio=ref_res / math.prod(n * tomo.spacing / t for n in tomo.shape)))
        keys = sorted({k for s in scaled for k in s})
        stage_s = {k: sum(s.get(k, 0.0) for s in scaled) / len(scaled) for k in keys}
        for k in shared_stages:
            shared_acc[k].append(stage_s.get(k, 0.0))
        flops, source = member_flops(m, flops_table)
        members.append(MemberProfile(name=m.name, kind=m.kind, windows=w_ref, flops_per_window=flops,
                                     flops_source=source, stage_s=stage_s, gpu_s_per_window=gpu_seconds.get(m.name),
                                     shared=shared_stages))
    shared = {k: (sum(v) / len(v) if v else 0.0) for k, v in shared_acc.items()}
    ref = f"{'x'.join(map(str, shape))} voxels at {spacing} Å, resampled to {t:g} Å"
    return ProfileReport(members=tuple(members), shared_s=shared,
                         n_tomograms=target.hidden_test_tomograms if n_tomograms is None else n_tomograms, gpus=gpus,
                         reference=ref, measured=tuple(measured), machine=machine or machine_description(),
                         cpu_machines=cpu_machines, budget_h=budget_h, target=target)
