"""Checkpoints -> a state dict that loads strictly into a member, and the file's sha256.

Accepted layouts (``torch.load``, ``weights_only=True`` unless ``trust=True``):

1. a plain ``state_dict`` (a mapping of names to tensors);
2. a container with the model weights under the first present key of :data:`MODEL_KEYS`
   (Lightning's ``state_dict``; ``model_state_dict``, ``model``, ``net``);
3. EMA weights, looked up in this order: a top-level :data:`EMA_KEYS` entry (timm's
   ``state_dict_ema``, ``model_ema``, ``ema_state_dict``, ``ema``), then keys inside the model
   weights under :data:`EMA_PREFIXES` (``ema_model.``, ``model_ema.``, ``ema.``: an EMA copy held as a
   sub-module of a LightningModule). Those keys are never part of the non-EMA weights. An EMA entry
   may hold one state dict per decay, keyed by the decay as a number -- the 3rd-place (yagm) layout
   is ``ema_state_dict = {0.99: state_dict}``: ``ema_decay`` picks one, else the only one is taken.

``weights='auto'`` (default) takes the EMA weights when the checkpoint has them, else the model's;
``'ema'`` requires them; ``'model'`` ignores them.

Then the wrappers are peeled: a Lightning checkpoint (it has ``state_dict`` and
``pytorch-lightning_version``/``epoch``/``global_step``) keeps only the keys under ``model.`` of the
chosen weights, EMA or not (the network is ``self.model`` of the LightningModule; other keys --
losses, metrics -- are logged and dropped); then ``module.`` (DataParallel/DDP, ``AveragedModel``,
whose ``n_averaged`` counter is dropped), ``_orig_mod.`` (torch.compile) and a leading ``model.`` are
stripped while *every* key has them.

:func:`load_into` drops the member's training-only keys (``reg_head.*`` of the 2d members; listed in
the log and the result), loads tensors the model shares under several names (CoaT's ``cpeN`` /
``serial_blocksN.M.cpe``) once -- they must agree where the checkpoint has more than one of them --
and is strict otherwise: any missing, unexpected or shape-mismatched key is an
:class:`~inference.common.errors.InputError` listing a few of each.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from inference.common.errors import InputError
from inference.common.file_hash import sha256_file

logger = logging.getLogger(__name__)

MODEL_KEYS = ("state_dict", "model_state_dict", "model", "net")
EMA_KEYS = ("state_dict_ema", "model_ema", "ema_state_dict", "ema")
EMA_PREFIXES = ("ema_model.", "model_ema.", "ema.")
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")
LIGHTNING_MARKERS = ("pytorch-lightning_version", "epoch", "global_step", "lr_schedulers")
SHOW = 5  # keys listed per category in a mismatch error
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    sha256: str
    state_dict: dict[str, torch.Tensor]
    source: str  # where the weights came from, e.g. "ema_state_dict[0.99] (Lightning, model.*)"
    ema: bool
    weights: str  # what was chosen, for the metadata: "ema (decay 0.99)", "ema" or "model"


@dataclass(frozen=True)
class LoadResult:
    ignored: tuple[str, ...]  # training-only keys dropped
    tied: int                 # groups of names sharing one tensor, each loaded once


def _harmless_globals() -> list:
    """Plain data that training loops leave in checkpoints (Lightning callback and loop states: numpy
    scalars and dtypes, paths), allowed by the weights-only unpickler. Nothing callable."""
    import pathlib

    import numpy as np

    core = getattr(np, "_core", None) or np.core  # numpy 2 / 1
    scalar = core.multiarray.scalar
    dtypes = [type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_)]
    # pickles written under numpy 1.x name the scalar reconstructor numpy.core.multiarray.scalar
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes, pathlib.PosixPath,
            pathlib.WindowsPath]


def _is_tensor_map(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap(obj, path: Path, what: str) -> dict[str, torch.Tensor]:
    """A mapping of tensors, possibly one level down (``{'state_dict': {...}}``, ``{'module': {...}}``)."""
    if _is_tensor_map(obj):
        return dict(obj)
    if isinstance(obj, nn.Module):
        return dict(obj.state_dict())
    if isinstance(obj, Mapping):
        for k in ("state_dict", "module", "model"):
            if k in obj:
                return _unwrap(obj[k], path, f"{what}.{k}")
        non_tensor = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)][:3]
        raise InputError(path, f"'{what}' is not a state dict (non-tensor entries: {non_tensor})",
                         "save the weights with torch.save(model.state_dict(), path)")
    raise InputError(path, f"'{what}' holds a {type(obj).__name__}, not a state dict",
                     "save the weights with torch.save(model.state_dict(), path)")


def _as_decay(key) -> float | None:
    if isinstance(key, bool):
        return None
    if isinstance(key, (int, float)):
        return float(key)
    try:
        return float(key)
    except (TypeError, ValueError):
        return None


def _ema_entry(obj, path: Path, what: str, decay: float | None) -> tuple[dict[str, torch.Tensor], str, float | None]:
    """An EMA entry: a state dict, or ``{decay: state_dict}`` (one per decay). Returns the state dict,
    where it came from and the decay (None when the entry is not keyed by decay)."""
    by_decay = (isinstance(obj, Mapping) and len(obj) > 0 and not _is_tensor_map(obj)
                and all(_as_decay(k) is not None and isinstance(v, Mapping) for k, v in obj.items()))
    if not by_decay:
        if decay is not None:
            raise InputError(path, f"--ema-decay {decay:g} but '{what}' is one state dict, not one per decay",
                             "drop --ema-decay")
        return _unwrap(obj, path, what), what, None
    decays = {k: _as_decay(k) for k in obj}
    if decay is None:
        if len(obj) > 1:
            raise InputError(path, f"'{what}' holds EMA weights for several decays ({', '.join(f'{d:g}' for d in decays.values())})",
                             "pick one with --ema-decay")
        key = next(iter(obj))
    else:
        hits = [k for k, d in decays.items() if abs(d - decay) <= 1e-9 * max(1.0, abs(decay))]
        if not hits:
            raise InputError(path, f"'{what}' has no EMA weights for decay {decay:g} (it has "
                             f"{', '.join(f'{d:g}' for d in decays.values())})", "pass one of those to --ema-decay")
        key = hits[0]
    return _unwrap(obj[key], path, f"{what}[{key!r}]"), f"{what}[{key!r}]", decays[key]


def _strip(sd: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _peel(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Strip wrapper prefixes present on every key; returns the dict and the prefixes stripped."""
    stripped = []
    changed = True
    while changed and sd:
        changed = False
        for p in WRAPPER_PREFIXES:
            keys = [k for k in sd if k != "n_averaged"]
            if keys and all(k.startswith(p) for k in keys):
                sd = _strip(sd, p)  # drops AveragedModel's top-level n_averaged with the prefix
                stripped.append(p)
                changed = True
    return sd, stripped


def read_checkpoint(path: str | Path, weights: str = "auto", *, trust: bool = False,
                    ema_decay: float | None = None) -> Checkpoint:
    """Load ``path`` and pick its weights (see the module docstring); not yet matched to a model."""
    path = Path(path)
    if weights not in ("auto", "ema", "model"):
        raise ValueError(f"weights must be auto, ema or model, got {weights!r}")
    if not path.is_file():
        raise InputError(path, "checkpoint not found", "pass --checkpoint with an existing .pt/.pth/.ckpt file")
    digest = sha256_file(path)
    try:
        with torch.serialization.safe_globals(_harmless_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if not found:  # not a pickle of known objects at all: corrupt or not a torch file
            detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
            raise InputError(path, "not a readable torch checkpoint (" + (detail.group(1).strip() if detail else
                             type(exc).__name__) + ")", "check the file is complete (compare its sha256) and was "
                             "written by torch.save") from None
        raise InputError(path, f"torch.load(weights_only=True) refused it (it pickles {found.group(1)})",
                         "re-save only the weights (torch.save(ckpt['state_dict'], p)) or, for a file you "
                         "trust, pass --trust-checkpoint") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise InputError(path, f"not a readable torch checkpoint ({type(exc).__name__}: {exc})",
                         "check the file is complete (compare its sha256) and was written by torch.save") from None

    lightning = isinstance(obj, Mapping) and "state_dict" in obj and any(k in obj for k in LIGHTNING_MARKERS)
    main_src, main = None, None
    if _is_tensor_map(obj) or isinstance(obj, nn.Module):
        main_src, main = "state_dict (top level)", _unwrap(obj, path, "(top level)")
    elif isinstance(obj, Mapping):
        for k in MODEL_KEYS:
            if k in obj:
                main_src, main = k, _unwrap(obj[k], path, k)
                break
    else:
        raise InputError(path, f"holds a {type(obj).__name__}, not a state dict or a checkpoint dict",
                         "save the weights with torch.save(model.state_dict(), path)")

    ema_src, ema, decay = None, None, None
    if isinstance(obj, Mapping) and weights != "model":  # --weights model: EMA entries are not even parsed
        for k in EMA_KEYS:
            if k in obj and obj[k] is not None:
                ema, ema_src, decay = _ema_entry(obj[k], path, k, ema_decay)
                break
    if main is not None:
        for p in EMA_PREFIXES:
            sub = _strip(main, p)
            if sub:
                main = {k: v for k, v in main.items() if not k.startswith(p)}
                if ema is None:
                    ema_src, ema = f"{main_src} ({p}*)", sub
        if not main:
            main = None
    if main is None and ema is None:
        keys = list(obj)[:6] if isinstance(obj, Mapping) else []
        raise InputError(path, f"no weights found (top-level keys: {keys})",
                         f"store them under one of {', '.join(MODEL_KEYS + EMA_KEYS)} or save a plain state_dict")

    if ema_decay is not None and decay is None and weights != "model":
        raise InputError(path, f"--ema-decay {ema_decay:g} but the checkpoint has no EMA weights keyed by decay",
                         "drop --ema-decay")
    if weights == "ema" and ema is None:
        raise InputError(path, "--weights ema but the checkpoint has no EMA weights",
                         f"EMA is looked for under {', '.join(EMA_KEYS)} or key prefixes {', '.join(EMA_PREFIXES)}; "
                         "use --weights model")
    use_ema = ema is not None and weights in ("auto", "ema")
    if weights == "model" and main is None:
        raise InputError(path, "--weights model but the checkpoint only has EMA weights", "use --weights ema or auto")
    sd, source = (ema, ema_src) if use_ema else (main, main_src)

    if lightning:
        inside = _strip(sd, "model.")
        if inside:
            dropped = sorted(k for k in sd if not k.startswith("model."))
            if dropped:
                logger.info("%s: Lightning checkpoint: %d keys outside 'model.' ignored (%s)", path.name,
                            len(dropped), ", ".join(dropped[:SHOW]))
            sd, source = inside, f"{source} (Lightning, model.*)"
    sd, stripped = _peel(sd)
    if stripped:
        source += f" (stripped {' '.join(stripped)})"
    logger.info("%s: %s weights from %s, %d tensors, sha256 %s", path.name, "EMA" if use_ema else "model",
                source, len(sd), digest[:12])
    chosen = ("ema" + (f" (decay {decay:g})" if decay is not None else "")) if use_ema else "model"
    return Checkpoint(path=path, sha256=digest, state_dict=sd, source=source, ema=use_ema, weights=chosen)


def _few(items: list[str]) -> str:
    more = f", ... (+{len(items) - SHOW})" if len(items) > SHOW else ""
    return ", ".join(items[:SHOW]) + more


def diff_state_dict(model: nn.Module, sd: Mapping[str, torch.Tensor]) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, shape mismatches as 'key ckpt[..] != model[..]'), each sorted."""
    own = model.state_dict()
    missing = sorted(k for k in own if k not in sd)
    unexpected = sorted(k for k in sd if k not in own)
    shapes = sorted(f"{k} ckpt{list(sd[k].shape)} != model{list(own[k].shape)}"
                    for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape))
    return missing, unexpected, shapes


def _load_tied_once(model: nn.Module, sd: dict[str, torch.Tensor], path: Path) -> tuple[dict, int]:
    """Names of one shared tensor (``model.state_dict()`` lists a shared module under each of its
    names): check the checkpoint's copies agree, fill the names it lacks. Returns (sd, groups)."""
    groups: dict[int, list[str]] = {}
    for k, v in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(v), []).append(k)
    sd = dict(sd)
    n = 0
    for names in (g for g in groups.values() if len(g) > 1):
        present = [k for k in names if k in sd]
        if not present:
            continue
        n += 1
        first = sd[present[0]]
        for k in present[1:]:
            if sd[k].shape != first.shape or not torch.equal(sd[k], first):
                raise InputError(path, f"{present[0]} and {k} name one shared tensor of the model but differ in the "
                                 "checkpoint", "re-save the checkpoint from the model (model.state_dict())")
        for k in names:
            sd.setdefault(k, first)
    return sd, n


def load_into(model: nn.Module, ckpt: Checkpoint, arch: str, ignored_prefixes: tuple[str, ...] = (),
              trained_patch: tuple[int, ...] | None = None) -> LoadResult:
    """Strictly load ``ckpt`` into ``model`` (see the module docstring); any difference is one readable
    InputError. ``trained_patch`` goes into the hint (2d members are built for their patch)."""
    own = model.state_dict()
    ignored = tuple(sorted(k for k in ckpt.state_dict if k.startswith(tuple(ignored_prefixes)) and k not in own))
    sd = {k: v for k, v in ckpt.state_dict.items() if k not in set(ignored)}
    if ignored:
        logger.info("%s: %d training-only keys ignored: %s", ckpt.path.name, len(ignored), _few(list(ignored)))
    sd, tied = _load_tied_once(model, sd, ckpt.path)
    missing, unexpected, shapes = diff_state_dict(model, sd)
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_few(unexpected)})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches ({_few(shapes)})")
        patch = f" (its checkpoints: --patch {' '.join(map(str, trained_patch))})" if trained_patch else ""
        raise InputError(ckpt.path, f"weights ({ckpt.source}) do not match arch {arch}: " + "; ".join(parts),
                         f"pass the --arch and --patch the checkpoint was trained with{patch}, or choose "
                         "--weights ema/model")
    model.load_state_dict(sd, strict=True)
    if tied:
        logger.info("%s: %d tensors shared under several names, each loaded once", ckpt.path.name, tied)
    return LoadResult(ignored=ignored, tied=tied)


def find_checkpoint(directory: str | Path, name: str) -> Path:
    """``<directory>/<name>.pt|.pth|.ckpt``: exactly one must exist."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(directory, "checkpoint folder not found", "pass --checkpoints with an existing folder")
    found = [directory / f"{name}{s}" for s in CHECKPOINT_SUFFIXES if (directory / f"{name}{s}").is_file()]
    if not found:
        raise InputError(directory, f"no checkpoint for member {name}",
                         f"put it there as {name}.pt, {name}.pth or {name}.ckpt (or export with --random-init)")
    if len(found) > 1:
        raise InputError(directory, f"several checkpoints for member {name}: {', '.join(p.name for p in found)}",
                         "keep one of them")
    return found[0]
