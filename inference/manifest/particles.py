"""The ``task: particles`` part of a manifest: classes, the decoder, the ensemble, members' ``outputs``.

Schema (keys not listed are errors; defaults in brackets; the member keys of the motors task keep their
meaning, :mod:`inference.manifest.parse`)::

    task: particles
    target_spacing: 10.012
    default_spacing: 10.012
    classes:                      # the particle types, in submission order (names unique)
      - {name: apo-ferritin, radius_A: 60, weight: 1, threshold: 0.16}
                                  # radius_A > 0 (the metric matches within 0.5 x radius); weight >= 0
                                  # (in the score's average); threshold in (0, 1]: a pick needs prob >= it
    decode:                       # [{method: peaks}] the task's decoder, every class (inference.decode)
      method: peaks               # peaks | components | watershed
      fractions: {filter: 1.0, nms: 0.5, marker: 1.0, min_blob: 0.05, split: 1.0}
                                  # defaults as fractions of each class's radius (filter, nms, marker) or
                                  # ball volume (min_blob, split): inference/decode/particle_params.py
      connectivity: 26            # [26] 6 | 18 | 26 (components, watershed)
      weighted_centroid: true     # [true] a blob's point is its prob-weighted mean position
      max_picks: 1000             # [1000] per class and tomogram, the best first
      border_A: 0.0               # [0] drop picks closer than this to the map's border
      per_class:                  # [none] a class's own values in Å / Å³ (not its threshold: classes:)
        ribosome: {nms_A: 90.0}   # filter_A, nms_A, min_blob_A3, split_A3, marker_A, connectivity, ...
    ensemble: heatmap             # [heatmap] | points
    fusion: {radius_fraction: 0.5, conf_type: avg, skip_conf: 0.0, rescale: members}
                                  # ensemble points only: per-class point WBF joining points closer than
                                  # radius_fraction x the class radius
    candidate_floor: 0.05         # [0.05] --candidates-dir keeps picks down to this prob (for `tune`)
    members:
      - name: seg
        outputs: [background, apo-ferritin, ...]   # required: the model's channels by name, in ITS order;
                                  # `background` is no class; a class may be missing from a member, but each
                                  # class needs one member that outputs it
        activation: softmax       # [softmax] softmax over the output channels | sigmoid: per channel
        decode: {method: ...}     # ensemble points only: this member's decoder (the block above)

Members' outputs are stitched as logits (``stitch.space: logit``; ``prob`` is refused) and averaged over
their TTAs (``tta_merge: separate`` is refused). ``heatmap`` needs one activation for all members.
"""

from __future__ import annotations

from typing import Any

from inference.decode.particle_params import CONNECTIVITIES, METHODS, OVERRIDABLE, Fractions, decode_params
from inference.manifest.blocks import Ctx
from inference.manifest.particle_classes import ParticleClass
from inference.manifest.types import DecodeParams, Fusion, Particles

BACKGROUND = "background"
ACTIVATIONS = ("softmax", "sigmoid")
TOP_KEYS = {"task", "target_spacing", "default_spacing", "members", "classes", "decode", "ensemble", "fusion",
            "candidate_floor"}
MEMBER_KEYS = {"outputs"}
_DECODE_KEYS = {"method", "fractions", "connectivity", "weighted_centroid", "max_picks", "border_A", "per_class"}
_FUSION_KEYS = {"radius_fraction", "conf_type", "skip_conf", "rescale"}


def classes(ctx: Ctx, value: Any) -> tuple[ParticleClass, ...]:
    """The ``classes`` list: each ``{name, radius_A, weight, threshold}``."""
    if not isinstance(value, list) or not value:
        raise ctx.fail("classes", "expected a non-empty list of {name, radius_A, weight, threshold}",
                       "list the particle types in submission order")
    out = []
    for i, raw in enumerate(value):
        key = f"classes[{i}]"
        data = ctx.mapping(raw, key)
        ctx.check_keys(data, key, {"name", "radius_A", "weight", "threshold"}, {"name", "radius_A", "threshold"})
        name = data["name"]
        if not isinstance(name, str) or not name or name == BACKGROUND or any(c.isspace() or c == "," for c in name):
            raise ctx.fail(f"{key}.name", f"{name!r} is not a class name",
                           "a name without spaces or commas, and not 'background'")
        out.append(ParticleClass(
            name=name,
            radius_A=ctx.number(data["radius_A"], f"{key}.radius_A", lo=0.0, lo_open=True),
            weight=ctx.number(data.get("weight", 1.0), f"{key}.weight", lo=0.0),
            threshold=ctx.number(data["threshold"], f"{key}.threshold", lo=0.0, hi=1.0, lo_open=True)))
    names = [c.name for c in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ctx.fail("classes", f"duplicate class name(s): {', '.join(dupes)}", "list each class once")
    return tuple(out)


def decode(ctx: Ctx, value: Any, key: str, cls: tuple[ParticleClass, ...]) -> tuple[DecodeParams, ...]:
    """A decode block -> one :class:`DecodeParams` per class (in ``cls`` order)."""
    data = ctx.block(value, key, _DECODE_KEYS)
    method = ctx.choice(data.get("method", "peaks"), f"{key}.method", METHODS)
    frac_raw = ctx.block(data.get("fractions"), f"{key}.fractions", set(Fractions.__dataclass_fields__))
    fractions = Fractions(**{k: ctx.number(v, f"{key}.fractions.{k}", lo=0.0) for k, v in frac_raw.items()})
    common: dict[str, Any] = {}
    if "connectivity" in data:
        common["connectivity"] = int(ctx.choice(data["connectivity"], f"{key}.connectivity", CONNECTIVITIES))
    if "weighted_centroid" in data:
        common["weighted_centroid"] = ctx.boolean(data["weighted_centroid"], f"{key}.weighted_centroid")
    if "max_picks" in data:
        common["max_picks"] = ctx.integer(data["max_picks"], f"{key}.max_picks")
    if "border_A" in data:
        common["border_A"] = ctx.number(data["border_A"], f"{key}.border_A", lo=0.0)
    per_class = ctx.block(data.get("per_class"), f"{key}.per_class", {c.name for c in cls})
    out = []
    for c in cls:
        own = ctx.mapping(per_class.get(c.name, {}), f"{key}.per_class.{c.name}")
        allowed = set(OVERRIDABLE) - {"threshold"}
        for k in own:
            if k == "threshold":
                raise ctx.fail(f"{key}.per_class.{c.name}.threshold", "a class's threshold is set in classes:",
                               f"set it on the class {c.name} under classes")
            if k not in allowed:
                raise ctx.fail(f"{key}.per_class.{c.name}.{k}", "unknown key",
                               f"use one of: {', '.join(sorted(allowed))}")
        try:
            out.append(decode_params(c, method, fractions=fractions, **{**common, **own}))
        except (TypeError, ValueError) as exc:
            raise ctx.fail(f"{key}.per_class.{c.name}" if own else key, str(exc),
                           "correct the value (docs/PARTICLES.md lists each decode key)") from None
    return tuple(out)


def outputs(ctx: Ctx, value: Any, key: str, cls: tuple[ParticleClass, ...]) -> tuple[str, ...]:
    """A member's ``outputs``: channel names, each ``background`` or a class, no repeats."""
    if not isinstance(value, list) or not value:
        raise ctx.fail(key, f"expected a non-empty list of channel names, got {value!r}",
                       "name the model's output channels in its order: background and class names")
    known = {c.name for c in cls} | {BACKGROUND}
    names = [str(v) for v in value]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ctx.fail(key, f"{', '.join(map(repr, unknown))} is no class of this manifest",
                       f"use background or one of: {', '.join(c.name for c in cls)}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ctx.fail(key, f"channel name(s) repeated: {', '.join(dupes)}", "name each channel once")
    if names == [BACKGROUND]:
        raise ctx.fail(key, "only background: the member outputs no class", "name the class channels")
    return tuple(names)


def particles(ctx: Ctx, data: dict, cls: tuple[ParticleClass, ...], members) -> Particles:
    """The task's block once the members are parsed: the ensemble, fusion, floor and the checks across members."""
    ensemble = ctx.choice(data.get("ensemble", "heatmap"), "ensemble", ("heatmap", "points"))
    fusion = ctx.block(data.get("fusion"), "fusion", _FUSION_KEYS)
    if fusion and ensemble != "points":
        raise ctx.fail("fusion", "the heatmap ensemble averages logits: no point fusion to configure",
                       "drop fusion, or use ensemble: points")
    for m in members:
        if m.tta_merge == "separate":
            raise ctx.fail(f"members ({m.name}).tta_merge", "a particle member's TTA logits are averaged",
                           "drop tta_merge (or set it to mean)")
    covered = {n for m in members for n in m.outputs}
    missing = [c.name for c in cls if c.name not in covered]
    if missing:
        raise ctx.fail("classes", f"no member outputs {', '.join(missing)}",
                       "add the class to a member's outputs, or remove it from classes")
    if ensemble == "heatmap":
        acts = sorted({m.activation for m in members})
        if len(acts) > 1:
            raise ctx.fail("members", f"the heatmap ensemble averages logits, then one activation; the members "
                           f"say {' and '.join(acts)}", "give every member the same activation, or ensemble: points")
        for m in members:
            if m.class_decode:
                raise ctx.fail(f"members ({m.name}).decode", "a member's decode is used with ensemble: points only",
                               "drop it; the top-level decode decodes the averaged heatmap")
    return Particles(
        classes=cls,
        decode=decode(ctx, data.get("decode"), "decode", cls),
        ensemble=ensemble,
        fusion_radius=ctx.number(fusion.get("radius_fraction", 0.5), "fusion.radius_fraction", lo=0.0, lo_open=True),
        candidate_floor=ctx.number(data.get("candidate_floor", 0.05), "candidate_floor", lo=0.0, hi=1.0,
                                   lo_open=True),
    )


def fusion(ctx: Ctx, data: dict) -> Fusion:
    """The point fusion of ``ensemble: points`` (``conf_type``, ``skip_conf``, ``rescale``; the distance is
    each class's ``radius_fraction`` x radius); the defaults of :class:`~inference.manifest.types.Fusion`."""
    f = ctx.block(data.get("fusion"), "fusion", _FUSION_KEYS)
    return Fusion(conf_type=ctx.choice(f.get("conf_type", "avg"), "fusion.conf_type", ("avg", "max")),
                  skip_conf=ctx.number(f.get("skip_conf", 0.0), "fusion.skip_conf", lo=0.0),
                  rescale=ctx.choice(f.get("rescale", "members"), "fusion.rescale", ("members", "weights")))
