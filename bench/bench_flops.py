"""FLOPs per window and parameters of every member at the manifest's patch.

    python bench/bench_flops.py [--manifest weights_manifest.yaml] [--check-scale 0.25] [--torchvision-stub]

Method: :func:`export.flops.count_flops` -- the member is built on torch's ``meta`` device and one
window ``(1, C, *patch)`` runs under ``torch.utils.flop_counter.FlopCounterMode``: convolutions,
matrix products and attention at 2 FLOPs per multiply-add, exact for any patch (no memory or
compute is used); element-wise ops are not counted. ``--check-scale F`` also counts each 3d member
at the patch scaled by F and extrapolates linearly in voxels (convnets scale linearly), as a
cross-check of the meta count.

``--torchvision-stub``: timm (the 2d encoders) imports torchvision at import time, and where no
torchvision matches the installed torch (a CPU-only torch next to PyPI's CUDA torchvision wheel)
the 2d members cannot be built. This flag registers, for this process only, an import hook that
provides empty ``torchvision`` modules, so that timm imports; maxvit/coat never call torchvision
when built and run, so the count is unaffected. Without it, 2d rows say why they are missing.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import sys
import time
import types
from pathlib import Path

from _measure import exact
from _report import Report

ROOT = Path(__file__).resolve().parents[1]


def install_torchvision_stub() -> None:
    """An import hook answering every ``torchvision[.x]`` import with an empty module (see the docstring)."""

    class _Missing(type):
        def __getattr__(cls, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Missing(name, (), {"__init__": _Missing._refuse})

        @staticmethod
        def _refuse(self, *args, **kwargs):
            raise RuntimeError("torchvision stand-in (bench --torchvision-stub): not usable")

    class _Module(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Missing(name, (), {"__init__": _Missing._refuse})

    class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path, target=None):
            if fullname == "torchvision" or fullname.startswith("torchvision."):
                return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
            return None

        def create_module(self, spec):
            module = _Module(spec.name)
            module.__path__ = []
            module.__version__ = "0+stub"
            return module

        def exec_module(self, module):
            return None

    sys.meta_path.insert(0, _Finder())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=ROOT / "weights_manifest.yaml",
                    help="patches and member names from here (default weights_manifest.yaml)")
    ap.add_argument("--check-scale", type=float, default=0.25,
                    help="3d cross-check: count at patch x F and extrapolate by voxels (default 0.25; 0: off)")
    ap.add_argument("--torchvision-stub", action="store_true",
                    help="let timm import without a working torchvision (see the module docstring)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "flops.md")
    args = ap.parse_args(argv)
    if args.torchvision_stub:
        install_torchvision_stub()

    import torch

    from export.errors import ExportError
    from export.flops import count_flops
    from export.manifest_export import read_manifest, scale_patch
    from export.models.registry import REGISTRY, arch_for_member

    manifest, _ = read_manifest(args.manifest)
    rows, metrics = [], {}
    for m in manifest.members:
        spec = REGISTRY[arch_for_member(m.name)]
        t0 = time.perf_counter()
        try:
            fc = count_flops(spec, m.patch)
        except ExportError as exc:
            shape = " x ".join(map(str, (spec.in_channels, *m.patch)))
            rows.append(f"| {m.name} | {spec.kind} | {shape} | - | - | - | "
                        f"not built: {str(exc).split('. Fix')[0]} |")
            continue
        check = "-"
        if spec.kind == "3d" and args.check_scale:
            small = scale_patch(m.patch, args.check_scale, spec.patch_multiple)
            fs = count_flops(spec, small)
            vox = lambda p: float(torch.tensor(p).prod())  # noqa: E731
            check = f"{fs.flops * vox(m.patch) / vox(small) / 1e9:,.1f} (from {' x '.join(map(str, small))})"
        shape = " x ".join(map(str, (spec.in_channels, *m.patch)))
        metrics[f"{m.name} GFLOPs"], metrics[f"{m.name} params M"] = fc.flops / 1e9, fc.params / 1e6
        rows.append(f"| {m.name} | {spec.kind} | {shape} | {' x '.join(map(str, fc.output_shape[1:]))} | "
                    f"{fc.flops / 1e9:,.1f} | {fc.params / 1e6:.2f} | {check} |")
        print(rows[-1], f"({time.perf_counter() - t0:.1f}s)", flush=True)

    rep = Report("bench_flops.py", "FLOPs per window", argv, packages=["torch", "torchvision", "timm"])
    for key, value in metrics.items():
        rep.metric(key, exact(value))
    rep.add(f"- manifest: {args.manifest.name} (patch per member; one window = batch 1)",
            "- method: member built on the `meta` device, one window through `torch.utils.flop_counter."
            "FlopCounterMode` (conv, matmul, attention; 2 FLOPs per multiply-add; element-wise ops not counted). "
            "Exact at the full patch, nothing allocated. Cross-check for 3d: counted at a smaller patch and "
            "scaled linearly by voxels. A count, not a timing: no repeats.",
            "- maxvit_tiny is built with img_size = patch (its window is patch/32), so its relative-position tables "
            "and parameter count depend on the patch; 2d parameters without the training-only `reg_head`.")
    if args.torchvision_stub:
        rep.add("- 2d members: timm imported with `--torchvision-stub` (torchvision cannot load next to this "
                "CPU-only torch; the stand-in is never called by these models)")
    rep.add("", "| member | kind | input (C x patch) | output (1 x grid) | GFLOPs / window | params (M) "
            "| 3d cross-check GFLOPs |", "|---|---|---|---|---:|---:|---|", *rows)
    rep.write(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
