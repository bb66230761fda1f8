"""``python -m export``: PyTorch members -> verified ONNX -> TensorRT engines.

Subcommands (each ``--help`` documents every option): ``onnx`` (one member), ``all`` (every member
of a manifest), ``tensorrt`` (an engine and its sidecar from an ONNX file), ``archs`` (the registry).
Bad input ends with one line ``error: <file>: <problem>. Fix: <what to do>`` and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from inference.common.errors import EngineError, InputError

logger = logging.getLogger("export")


def _add_common(p) -> None:
    p.add_argument("--weights", choices=("auto", "ema", "model"), default="auto",
                   help="which weights of a checkpoint: auto (EMA when present, else the model's; default), ema, model")
    p.add_argument("--ema-decay", type=float, default=None,
                   help="EMA weights stored per decay (the 3rd-place layout: ema_state_dict = {0.99: ...}): which "
                        "decay (default: the only one)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="unpickle arbitrary objects in checkpoints (torch.load weights_only=False); only for "
                        "files you trust")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, >= 17 (default 17)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random init and of the parity input (default 0)")
    p.add_argument("--tol", type=float, default=1e-4,
                   help="largest allowed max |torch - ONNX Runtime| on the parity input, as a fraction of the output's "
                        "scale max |torch| (default 1e-4, fp32)")
    p.add_argument("--parity-batch", type=int, default=None,
                   help="batch of the parity input (default 2, which also proves the batch axis is dynamic; 1 for "
                        "inputs above 4M values, e.g. 224x448x448, which halves the memory)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads for the parity check "
                   "(default: all cores)")


def _add_onnx(sub) -> None:
    p = sub.add_parser(
        "onnx", help="export one member to ONNX (checked, metadata inside, parity vs ONNX Runtime)",
        description="Build one member (a registry arch or --arch module:function), load its checkpoint strictly "
                    "(or a seeded random init), export to ONNX with a dynamic batch axis, run onnx.checker, store "
                    "the metadata in the file and compare ONNX Runtime (CPU) with torch on random input.",
    )
    p.add_argument("--arch", required=True, help="registry arch (python -m export archs) or module:function / "
                   "path/to/file.py:function returning an nn.Module")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="checkpoint: plain state_dict, Lightning .ckpt, or with EMA "
                     "weights (see export/checkpoints.py)")
    src.add_argument("--random-init", action="store_true", help="no checkpoint: a seeded random init (a runnable "
                     "stand-in)")
    p.add_argument("--patch", required=True, type=int, nargs="+", metavar="N",
                   help="input window: D H W for a 3d member, H W for 2d; each side a multiple of 32 (the recipe: "
                        "224 448 448 and 896 896; 2d checkpoints fit only the patch they were trained at)")
    p.add_argument("--out", required=True, type=Path, help="ONNX file to write (M.onnx)")
    p.add_argument("--spacing", type=float, default=16.0, help="Å per voxel the member expects, stored in the "
                   "metadata (default 16.0)")
    p.add_argument("--normalize", default=None, help="normalization inference applies before the net, stored in the "
                   "metadata: MEAN,STD or zscore (default 0,1 for registry archs, which take raw 0..255 and normalise "
                   "inside; 0,255 for module:function archs)")
    p.add_argument("--activation", choices=("sigmoid", "none"), default="sigmoid",
                   help="activation inference applies to the raw output, stored in the metadata (default sigmoid)")
    p.add_argument("--in-channels", type=int, default=None, help="module:function archs only: input channels "
                   "(default: the module's in_channels attribute, else 1 for 3d, 3 for 2d)")
    p.add_argument("--stride", type=int, default=None, help="module:function archs only: output stride "
                   "(default: the module's stride attribute, else 16)")
    _add_common(p)
    p.set_defaults(func=_run_onnx)


def _lib(name: str):
    """An export module that imports torch/onnx: any failure to load them is one ExportError line."""
    from export.deps import import_module

    return import_module(name, f"python -m export ({name} needs torch, onnx and onnxruntime)")


def _run_onnx(args) -> int:
    lib = _lib("export.onnx_export")
    export_onnx, parse_normalize = lib.export_onnx, lib.parse_normalize

    report = export_onnx(
        args.arch, tuple(args.patch), args.out, checkpoint=args.checkpoint, random_init=args.random_init,
        weights=args.weights, trust_checkpoint=args.trust_checkpoint, opset=args.opset, seed=args.seed,
        tol=args.tol, spacing=args.spacing, activation=args.activation,
        normalize=parse_normalize(args.normalize) if args.normalize is not None else None,
        in_channels=args.in_channels, stride=args.stride, threads=args.threads, ema_decay=args.ema_decay,
        parity_batch=args.parity_batch)
    print(f"wrote {report.describe()}")
    return 0


def _add_all(sub) -> None:
    p = sub.add_parser(
        "all", help="export every member of a manifest to <out>/<member model path>",
        description="Export every member of a weights manifest (validated like inference does, except that the "
                    "model files need not exist yet) to <out>/<model path of the member>, each checked as by "
                    "`onnx`. A derived manifest <out>/<stem>.exported.yaml is written when the manifest itself "
                    "would not describe the result (scaled patch, --only, another --out); the describing manifest "
                    "is validated at the end.",
    )
    p.add_argument("--manifest", required=True, type=Path, help="weights_manifest.yaml")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoints", type=Path, help="folder with <member name>.pt|.pth|.ckpt per member")
    src.add_argument("--random-init", action="store_true", help="no checkpoints: seeded random-init stand-ins")
    p.add_argument("--out", type=Path, default=None, help="root for the model paths of the manifest (default: the "
                   "manifest's folder, so the manifest validates afterwards)")
    p.add_argument("--patch-scale", type=float, default=None, help="export every patch side times this, rounded to "
                   "a multiple of 32 (for tests and quick checks; writes the derived manifest)")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME", help="export only these members")
    _add_common(p)
    p.set_defaults(func=_run_all)


def _run_all(args) -> int:
    export_all = _lib("export.manifest_export").export_all

    res = export_all(args.manifest, args.out, checkpoints=args.checkpoints, random_init=args.random_init,
                     patch_scale=args.patch_scale, only=args.only, weights=args.weights,
                     trust_checkpoint=args.trust_checkpoint, opset=args.opset, seed=args.seed, tol=args.tol,
                     threads=args.threads, ema_decay=args.ema_decay, parity_batch=args.parity_batch)
    worst = max(r.rel_diff for r in res.reports)
    print(f"exported {len(res.reports)} member(s) ({', '.join(r.arch for r in res.reports)}), worst parity "
          f"{worst:.1e} of the output's scale; manifest {res.manifest} validates")
    return 0


def _add_tensorrt(sub) -> None:
    p = sub.add_parser(
        "tensorrt", help="build a TensorRT 10 engine (and M.engine.json sidecar) from an exported ONNX",
        description="Parse the ONNX with TensorRT's parser, add one optimization profile for the dynamic batch "
                    "(spatial axes fixed to the ONNX patch), build (fp32 or --fp16) with a timing cache, write the "
                    "engine and its JSON sidecar (TensorRT version, GPU, compute capability, ONNX sha256, fp16, "
                    "batch profile, input/output shapes; format in inference/engines/tensorrt_sidecar.py).",
    )
    p.add_argument("--onnx", required=True, type=Path, help="ONNX file written by `python -m export onnx`")
    p.add_argument("--out", required=True, type=Path, help="engine file to write (M.engine; sidecar M.engine.json)")
    p.add_argument("--fp16", action="store_true", help="allow fp16 kernels (BuilderFlag.FP16; TensorRT 10.x)")
    p.add_argument("--batch", default="1:2:4", help="batch profile MIN:OPT:MAX (default 1:2:4), or N for fixed N")
    p.add_argument("--workspace-gb", type=float, default=4.0, help="builder workspace limit in GiB (default 4)")
    p.add_argument("--timing-cache", type=Path, default=None, help="timing cache file: loaded if present, saved "
                   "after the build (speeds up rebuilds)")
    p.add_argument("--device-id", type=int, default=0, help="CUDA device to build on (default 0)")
    p.set_defaults(func=_run_tensorrt)


def _run_tensorrt(args) -> int:
    from export.tensorrt import build_engine
    from inference.engines.tensorrt_sidecar import BatchProfile

    sc = build_engine(args.onnx, args.out, fp16=args.fp16, batch=BatchProfile.parse(args.batch),
                      workspace_gb=args.workspace_gb, timing_cache=args.timing_cache, device_id=args.device_id)
    print(f"wrote {args.out} (+ .json): TensorRT {sc.tensorrt_version} on {sc.gpu_name} "
          f"(sm {sc.compute_capability}), fp16={sc.fp16}, batch {sc.batch_profile}")
    return 0


def _add_archs(sub) -> None:
    p = sub.add_parser("archs", help="list the registry: arch, kind, input channels, stride, description",
                       description="List the archs `onnx --arch` and `all` know.")
    p.set_defaults(func=_run_archs)


def _run_archs(args) -> int:
    REGISTRY = _lib("export.models.registry").REGISTRY  # noqa: N806

    for s in REGISTRY.values():
        print(f"{s.name:18s} {s.kind}  in {s.in_channels}  stride {s.stride}  patch multiple {s.patch_multiple}  "
              f"{s.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export",
                                     description="PyTorch members -> verified ONNX -> TensorRT engines.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_onnx(sub)
    _add_all(sub)
    _add_tensorrt(sub)
    _add_archs(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from export.errors import ExportError
    from inference.cli.main import run_command

    return run_command(build_parser(), argv, errors=(InputError, EngineError, ExportError))
