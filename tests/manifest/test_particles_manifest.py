"""``task: particles`` manifests: the schema of inference/manifest/particles.py, defaults from each class's
radius, and one-line errors naming the key."""

from __future__ import annotations

import copy
import math

import pytest
import yaml

from inference.common.errors import InputError
from inference.manifest.parse import parse_manifest

BASE = {
    "task": "particles",
    "target_spacing": 10.012,
    "default_spacing": 10.012,
    "classes": [{"name": "apo-ferritin", "radius_A": 60, "weight": 1, "threshold": 0.16},
                {"name": "ribosome", "radius_A": 150, "weight": 1, "threshold": 0.13}],
    "members": [{"name": "seg", "kind": "3d", "model": "seg.onnx", "patch": [32, 32, 32], "stride": 2,
                 "normalize": "zscore", "outputs": ["background", "apo-ferritin", "ribosome"]}],
}


def parse(data, tmp_path):
    return parse_manifest(data, tmp_path / "m.yaml", check_files=False)


def edited(**changes):
    data = copy.deepcopy(BASE)
    for path, value in changes.items():
        *keys, last = path.split("__")
        target = data
        for k in keys:
            target = target[int(k)] if k.isdigit() else target[k]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return data


def test_defaults(tmp_path):
    m = parse(BASE, tmp_path)
    assert m.task == "particles" and m.threshold is None
    p = m.particles
    assert p.names == ("apo-ferritin", "ribosome") and p.ensemble == "heatmap" and p.candidate_floor == 0.05
    member = m.members[0]
    assert member.outputs == ("background", "apo-ferritin", "ribosome") and member.out_channels == 3
    assert member.activation == "softmax" and member.stitch.space == "logit" and member.class_decode == ()
    apo, ribo = p.decode
    assert apo.method == "peaks" and apo.threshold == 0.16 and ribo.threshold == 0.13
    assert (apo.filter_A, apo.nms_A, apo.marker_A) == (60.0, 30.0, 60.0)  # 1.0, 0.5, 1.0 x the radius
    assert apo.min_blob_A3 == pytest.approx(0.05 * 4 / 3 * math.pi * 60 ** 3)


def test_decode_block_fractions_common_keys_and_per_class(tmp_path):
    data = edited(decode={"method": "watershed", "fractions": {"nms": 0.25, "min_blob": 0.1}, "connectivity": 6,
                          "max_picks": 50, "per_class": {"ribosome": {"nms_A": 90.0}}})
    apo, ribo = parse(data, tmp_path).particles.decode
    assert apo.method == ribo.method == "watershed" and apo.connectivity == ribo.connectivity == 6
    assert apo.nms_A == 15.0 and ribo.nms_A == 90.0 and apo.max_picks == ribo.max_picks == 50
    assert ribo.min_blob_A3 == pytest.approx(0.1 * 4 / 3 * math.pi * 150 ** 3)


def test_points_ensemble_with_a_member_decoder_and_fusion(tmp_path):
    data = edited(ensemble="points", fusion={"radius_fraction": 0.3, "conf_type": "max"},
                  members__0__decode={"method": "components"})
    m = parse(data, tmp_path)
    assert m.particles.ensemble == "points" and m.particles.fusion_radius == 0.3 and m.fusion.conf_type == "max"
    assert [d.method for d in m.members[0].class_decode] == ["components", "components"]


def test_a_motors_manifest_is_unchanged_by_the_task_key(tmp_path):
    motors = {"target_spacing": 16.0, "threshold": {"fixed": 0.5},
              "members": [{"name": "a", "kind": "3d", "model": "a.onnx", "patch": [32, 32, 32], "stride": 16,
                           "normalize": "zscore"}]}
    plain = parse(motors, tmp_path)
    assert plain.task == "motors" and plain.particles is None and plain.members[0].outputs == ()
    assert parse({**motors, "task": "motors"}, tmp_path) == plain


@pytest.mark.parametrize("changes, key, needle", [
    ({"classes__0__threshold": 1.5}, "classes[0].threshold", "1.5 must be <= 1.0"),
    ({"classes__0__threshold": 0.0}, "classes[0].threshold", "0.0 must be > 0.0"),
    ({"classes__1__name": "apo-ferritin"}, "classes", "duplicate class name"),
    ({"classes__0__radius_A": -1}, "classes[0].radius_A", "must be > 0"),
    ({"members__0__outputs": ["background", "apo-ferritin", "ribosomes"]}, "members[0] (seg).outputs",
     "'ribosomes' is no class"),
    ({"members__0__outputs": ["background", "apo-ferritin"]}, "classes", "no member outputs ribosome"),
    ({"members__0__outputs": None}, "members[0].outputs", "missing required key"),
    ({"members__0__activation": "none"}, "members[0] (seg).activation", "not one of softmax, sigmoid"),
    ({"members__0__stitch": {"space": "prob"}}, "members[0] (seg).stitch.space", "averaged as logits"),
    ({"members__0__decode": {"method": "peaks"}}, "members (seg).decode", "ensemble: points only"),
    ({"decode": {"method": "blobs"}}, "decode.method", "not one of peaks, components, watershed"),
    ({"decode": {"per_class": {"ribosome": {"threshold": 0.2}}}}, "decode.per_class.ribosome.threshold",
     "set in classes"),
    ({"decode": {"per_class": {"ribosome": {"radius": 2}}}}, "decode.per_class.ribosome.radius", "unknown key"),
    ({"decode": {"per_class": {"virus": {}}}}, "decode.per_class.virus", "unknown key"),
    ({"fusion": {"radius_fraction": 0.5}}, "fusion", "no point fusion"),
    ({"members__0__tta_merge": "separate", "members__0__tta": ["zyx", "zyx_x"]}, "members (seg).tta_merge",
     "averaged"),
    ({"threshold": {"fixed": 0.5}}, "threshold", "unknown key"),
    ({"candidate_floor": 0}, "candidate_floor", "must be > 0"),
])
def test_bad_keys_are_one_line_naming_the_key(tmp_path, changes, key, needle):
    with pytest.raises(InputError) as exc:
        parse(edited(**changes), tmp_path)
    text = str(exc.value)
    assert text.startswith(str(tmp_path / "m.yaml")) and f"key '{key}'" in text and needle in text, text
    assert "\n" not in text and " Fix: " in text, text


def test_motor_keys_of_the_particle_task_are_refused(tmp_path):
    motors = {"target_spacing": 16.0, "threshold": {"fixed": 0.5}, "classes": BASE["classes"],
              "members": [{"name": "a", "kind": "3d", "model": "a.onnx", "patch": [32, 32, 32], "stride": 16,
                           "normalize": "zscore", "outputs": ["a"]}]}
    with pytest.raises(InputError, match="key 'classes': unknown key"):
        parse(motors, tmp_path)


def test_the_demo_manifest_parses(tmp_path):
    from inference.synth.particle_demo_model import particles_manifest_dict

    for method in ("peaks", "components", "watershed"):
        m = parse(yaml.safe_load(yaml.safe_dump(particles_manifest_dict(method=method))), tmp_path)
        assert m.particles.decode[0].method == method and len(m.particles.classes) == 6
