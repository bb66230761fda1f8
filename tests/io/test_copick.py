"""copick formats without copick (inference.io.copick_picks, copick_config, copick_project), checked against
copick's documented pydantic models, written out below from the source.

Source: copick/copick ``src/copick/models.py`` (``CopickLocation``, ``CopickPoint``, ``CopickPicksFile``,
``PickableObject``, ``CopickConfig``) and ``src/copick/impl/filesystem.py`` (``CopickConfigFSSpec``; the paths of
``CopickPicksFSSpec``, ``CopickVoxelSpacingFSSpec``, ``CopickTomogramFSSpec``; ``_query_*_picks`` splitting a file
name on '_'); ``src/copick/util/escape.py`` (``sanitize_name``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from inference.common.errors import InputError
from inference.io.copick_config import PickableObject, config_document, read_config, write_config
from inference.io.copick_picks import (
    IDENTITY,
    name_parts,
    name_problem,
    picks_document,
    picks_path,
    read_picks,
    write_picks,
)
from inference.io.copick_project import is_copick_input, open_project, project_picks, run_names, run_tomograms

REQUIRED = object()
OPT_STR, OPT_FLOAT, OPT_INT, OPT_BOOL = (str, type(None)), (int, float, type(None)), (int, type(None)), (bool, type(None))
# field: (accepted JSON types, default or REQUIRED), as the pydantic models declare them
LOCATION = {"x": ((int, float), REQUIRED), "y": ((int, float), REQUIRED), "z": ((int, float), REQUIRED)}
POINT = {"location": (dict, REQUIRED), "transformation_": ((list, type(None)), IDENTITY),
         "instance_id": (OPT_INT, 0), "score": (OPT_FLOAT, 1.0)}
PICKS_FILE = {"pickable_object_name": (str, REQUIRED), "user_id": (str, REQUIRED), "session_id": (str, REQUIRED),
              "run_name": (OPT_STR, None), "voxel_spacing": (OPT_FLOAT, None), "unit": (str, "angstrom"),
              "points": ((list, type(None)), []), "trust_orientation": (OPT_BOOL, True)}
PICKABLE_OBJECT = {"name": (str, REQUIRED), "is_particle": (bool, REQUIRED), "label": (OPT_INT, 1),
                   "color": ((list, type(None)), [100, 100, 100, 255]), "emdb_id": (OPT_STR, None),
                   "pdb_id": (OPT_STR, None), "identifier": (OPT_STR, None), "map_threshold": (OPT_FLOAT, None),
                   "radius": (OPT_FLOAT, None)}
CONFIG_FS = {"name": (OPT_STR, "CoPick"), "description": (OPT_STR, "Let's CoPick!"), "version": (OPT_STR, "0.2.0"),
             "pickable_objects": (list, REQUIRED), "user_id": (OPT_STR, None), "session_id": (OPT_STR, None),
             "runs": ((list, type(None)), None), "voxel_spacings": ((list, type(None)), None),
             "tomograms": ((dict, type(None)), {}), "config_type": (str, "filesystem"), "overlay_root": (str, REQUIRED),
             "static_root": (OPT_STR, None), "overlay_fs_args": ((dict, type(None)), {}),
             "static_fs_args": ((dict, type(None)), {})}


def sanitize_name(value: str) -> str:
    """copick's rule (util/escape.py): invalid characters to '-', then '-' stripped at both ends."""
    return re.sub(r'[<>:"/\\|?*\x00-\x1F\x7F\s_]', "-", value).strip("-")


def check_model(doc: dict, spec: dict, where: str) -> None:
    """What pydantic would check: required fields present, types; we write no field the model lacks."""
    assert isinstance(doc, dict), where
    assert set(doc) <= set(spec), f"{where}: fields the model lacks: {set(doc) - set(spec)}"
    for key, (types, default) in spec.items():
        if key not in doc:
            assert default is not REQUIRED, f"{where}: required {key!r} missing"
            continue
        value, allowed = doc[key], types if isinstance(types, tuple) else (types,)
        assert isinstance(value, allowed) and (bool in allowed or not isinstance(value, bool)), f"{where}.{key}: {value!r}"


def check_picks_file(doc: dict) -> None:
    check_model(doc, PICKS_FILE, "CopickPicksFile")
    for name in ("pickable_object_name", "user_id", "session_id"):
        assert sanitize_name(doc[name]) == doc[name]
    for i, point in enumerate(doc["points"]):
        check_model(point, POINT, f"points[{i}]")
        check_model(point["location"], LOCATION, f"points[{i}].location")
        t = np.array(point["transformation_"])  # CopickPoint.validate_transformation
        assert t.shape == (4, 4) and t[3, 3] == 1.0 and np.allclose(t[3], [0, 0, 0, 1])


def check_config(doc: dict) -> None:
    check_model(doc, CONFIG_FS, "CopickConfigFSSpec")
    for i, obj in enumerate(doc["pickable_objects"]):
        check_model(obj, PICKABLE_OBJECT, f"pickable_objects[{i}]")
        assert obj["label"] != 0 and sanitize_name(obj["name"]) == obj["name"]  # PickableObject's validators
        assert len(obj["color"]) == 4 and all(0 <= c <= 255 for c in obj["color"])


# --- picks files --------------------------------------------------------------------------------


def test_written_picks_file_is_a_valid_copick_picks_file_at_copicks_path(tmp_path):
    xyz = np.array([[10.0, 20.0, 30.0], [1.5, 2.5, 3.5]])
    path = write_picks(tmp_path, "TS_5_4", "apo-ferritin", xyz, [0.9, 0.25], user_id="motorfinder",
                       voxel_spacing=10.012)
    # CopickPicksFSSpec.path: {overlay}/ExperimentRuns/{run}/Picks/{user}_{session}_{object}.json
    assert path == tmp_path / "ExperimentRuns" / "TS_5_4" / "Picks" / "motorfinder_0_apo-ferritin.json"
    doc = json.loads(path.read_text())
    check_picks_file(doc)
    assert list(doc) == ["pickable_object_name", "user_id", "session_id", "run_name", "voxel_spacing", "unit",
                         "points", "trust_orientation"]
    assert doc["session_id"] == "0" and doc["run_name"] == "TS_5_4" and doc["voxel_spacing"] == 10.012
    assert [p["location"] for p in doc["points"]] == [{"x": 10.0, "y": 20.0, "z": 30.0}, {"x": 1.5, "y": 2.5, "z": 3.5}]
    assert [p["score"] for p in doc["points"]] == [0.9, 0.25] and doc["points"][0]["transformation_"] == IDENTITY
    back = read_picks(path)
    assert back.object_name == "apo-ferritin" and back.user_id == "motorfinder" and back.session_id == "0"
    assert np.array_equal(back.xyz_A, xyz) and np.array_equal(back.scores, [0.9, 0.25])


def test_model_defaults_apply_when_reading_a_minimal_file(tmp_path):
    path = tmp_path / "Picks" / "ribosome.json"  # Kaggle's overlay name: <object>.json
    path.parent.mkdir()
    path.write_text(json.dumps({"pickable_object_name": "ribosome", "user_id": "curation", "session_id": "0",
                                "points": [{"location": {"x": 1, "y": 2, "z": 3}}, {"location": {"x": 4, "y": 5,
                                                                                                 "z": 6}, "score": None}]}))
    picks = read_picks(path)
    assert np.array_equal(picks.scores, [1.0, 1.0])  # CopickPoint.score defaults to 1.0
    assert picks.xyz_A.tolist() == [[1, 2, 3], [4, 5, 6]] and picks.run_name is None and picks.voxel_spacing is None
    path.write_text(json.dumps({"pickable_object_name": "ribosome", "user_id": "u", "session_id": "1"}))
    assert read_picks(path).xyz_A.shape == (0, 3)  # points default to an empty list
    path.write_text(json.dumps({"pickable_object_name": "ribosome", "user_id": "u", "session_id": "1", "points": None}))
    assert read_picks(path).xyz_A.shape == (0, 3)


def test_file_names_both_conventions():
    assert name_parts("curation_0_apo-ferritin.json") == ("curation", "0", "apo-ferritin")
    assert name_parts("apo-ferritin.json") == (None, None, "apo-ferritin")
    assert picks_path("/r", "run", "obj", "me", "7") == Path("/r/ExperimentRuns/run/Picks/me_7_obj.json")


def test_names_we_write_are_left_unchanged_by_copicks_sanitize_name():
    for good in ("motorfinder", "apo-ferritin", "a", "v2-x"):
        assert name_problem(good) is None and sanitize_name(good) == good
    for bad in ("my_user", "a b", "-lead", "trail-", "", "a/b", "x:y"):
        assert name_problem(bad) is not None
    with pytest.raises(InputError, match="letters, digits"):
        write_picks("/tmp", "r", "bad_name", [[0, 0, 0]], [1.0], user_id="u")


@pytest.mark.parametrize("doc, message", [
    ([1, 2], "one JSON object"),
    ({"points": []}, "no 'pickable_object_name'"),
    ({"pickable_object_name": "x", "points": {}}, "'points' is not a list"),
    ({"pickable_object_name": "x", "points": [{"loc": 1}]}, r"points\[0\] has no 'location'"),
    ({"pickable_object_name": "x", "points": [{"location": {"x": 1, "y": 2}}]}, r"points\[0\].location has no 'z'"),
    ({"pickable_object_name": "x", "points": [{"location": {"x": 1, "y": "a", "z": 2}}]}, "not a finite number"),
    ({"pickable_object_name": "x", "points": [{"location": {"x": 1, "y": 2, "z": 2}, "score": "high"}]}, "score"),
    ({"pickable_object_name": "x", "unit": "nanometer"}, "only 'angstrom'"),
])
def test_bad_picks_files_are_one_line_naming_the_file(tmp_path, doc, message):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=message) as exc:
        read_picks(path)
    assert str(exc.value).startswith(str(path)) and "\n" not in str(exc.value)
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_picks(path)


def test_picks_document_numbers_are_exact():
    doc = picks_document("o", "u", "0", "r", 7.5, np.array([[0.1, 0.2, 0.3]]) * 3, [0.5])
    assert doc["points"][0]["location"] == {"x": 0.1 * 3, "y": 0.2 * 3, "z": 0.3 * 3}  # float64 products, unrounded


# --- configs ------------------------------------------------------------------------------------


def test_written_config_is_a_valid_copick_filesystem_config(tmp_path):
    objects = [PickableObject("apo-ferritin", label=1, color=(0, 255, 0, 255), radius=60.0, pdb_id="4V1W"),
               PickableObject("ribosome", label=4, radius=150.0)]
    path = write_config(tmp_path / "copick.json", objects, overlay_root=tmp_path / "over", static_root=tmp_path / "st")
    doc = json.loads(path.read_text())
    check_config(doc)
    assert doc["overlay_root"] == f"local://{(tmp_path / 'over').resolve()}"
    assert doc["static_root"] == f"local://{(tmp_path / 'st').resolve()}"
    assert list(doc["pickable_objects"][0]) == list(PICKABLE_OBJECT)  # model_dump order, every field
    back = read_config(path)
    assert back.objects == tuple(objects) and back.overlay_root == (tmp_path / "over").resolve()
    with pytest.raises(ValueError):
        write_config(tmp_path / "c.json", [PickableObject("a", label=1), PickableObject("b", label=1)],
                     overlay_root=tmp_path)
    assert "static_root" not in config_document([], overlay_root=tmp_path)


def test_config_roots_resolve_as_copick_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "sub" / "c.json"
    cfg.parent.mkdir()
    for url, expected in [("local:///abs/path", Path("/abs/path")), ("file:///abs/p", Path("/abs/p")),
                          ("/plain/abs", Path("/plain/abs")), ("rel/dir", tmp_path / "rel" / "dir"),
                          ("local://rel", tmp_path / "rel"), ("~/x", Path(os.path.expanduser("~/x")))]:
        cfg.write_text(json.dumps({"overlay_root": url, "pickable_objects": []}))
        assert read_config(cfg).overlay_root == expected, url  # relative: to the current folder (fsspec)
    cfg.write_text(json.dumps({"overlay_root": "/o"}))
    c = read_config(cfg)
    assert c.static_root is None and c.objects == ()


@pytest.mark.parametrize("doc, message", [
    ({"config_type": "cryoet_data_portal", "dataset_ids": [10440], "overlay_root": "/o"}, "only 'filesystem'"),
    ({"static_root": "/s"}, "no 'overlay_root'"),
    ({"overlay_root": "s3://bucket/x"}, "s3://, which is not read here"),
    ({"overlay_root": "/o", "pickable_objects": [{"is_particle": True}]}, r"pickable_objects\[0\] has no 'name'"),
    ({"overlay_root": "/o", "pickable_objects": [{"name": "a", "color": [1, 2, 3]}]}, "RGBA"),
    ([], "one JSON object"),
])
def test_bad_configs_are_one_line(tmp_path, doc, message):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=message) as exc:
        read_config(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


# --- projects -----------------------------------------------------------------------------------


def make_run(root: Path, run: str, spacings=("10.000",), types=("denoised",)) -> None:
    for s in spacings:
        for t in types:
            (root / "ExperimentRuns" / run / f"VoxelSpacing{s}" / f"{t}.zarr").mkdir(parents=True)


def test_three_forms_of_input_name_the_same_runs(tmp_path):
    static = tmp_path / "static"
    make_run(static, "TS_5_4")
    make_run(static, "TS_6_6", types=("denoised", "wbp"))
    (static / "ExperimentRuns" / ".hidden").mkdir()
    cfg = tmp_path / "copick.config"
    cfg.write_text(json.dumps({"config_type": "filesystem", "pickable_objects": [],
                               "static_root": f"local://{static}", "overlay_root": f"local://{tmp_path / 'ov'}"}))
    for source in (static, static / "ExperimentRuns", cfg):
        assert is_copick_input(source)
        project = open_project(source)
        assert run_names(project) == ["TS_5_4", "TS_6_6"]
        runs = run_tomograms(project)
        assert [(r.experiment, r.path) for r in runs] == [
            ("TS_5_4", static / "ExperimentRuns" / "TS_5_4" / "VoxelSpacing10.000" / "denoised.zarr"),
            ("TS_6_6", static / "ExperimentRuns" / "TS_6_6" / "VoxelSpacing10.000" / "denoised.zarr")]
        assert runs[0].folder_spacing_A == 10.0
    assert not is_copick_input(tmp_path / "ov") and not is_copick_input(tmp_path)


def test_spacing_folder_closest_to_the_target(tmp_path):
    make_run(tmp_path, "r", spacings=("10.000", "20.000", "5.000"))
    project = open_project(tmp_path)
    assert run_tomograms(project, target_A=18)[0].path.parent.name == "VoxelSpacing20.000"
    assert run_tomograms(project, target_A=10.012)[0].path.parent.name == "VoxelSpacing10.000"
    assert run_tomograms(project)[0].path.parent.name == "VoxelSpacing5.000"  # no target: the finest
    make_run(tmp_path, "q", spacings=("10.000",), types=("wbp",))
    make_run(tmp_path, "q", spacings=("40.000",), types=("denoised",))
    q = run_tomograms(project, target_A=10)[0]  # the closest folder that holds the type
    assert q.experiment == "q" and q.path.parent.name == "VoxelSpacing40.000"


def test_run_without_the_tomogram_type_is_that_runs_problem_only(tmp_path):
    make_run(tmp_path, "good")
    make_run(tmp_path, "bad", types=("wbp", "isonetcorrected"))
    (tmp_path / "ExperimentRuns" / "bad" / "VoxelSpacing10.000" / "x_features.zarr").mkdir()
    (tmp_path / "ExperimentRuns" / "empty").mkdir()
    runs = {r.experiment: r for r in run_tomograms(open_project(tmp_path))}
    assert runs["good"].path is not None and runs["good"].problem is None
    err = str(runs["bad"].error())
    assert runs["bad"].path is None and "\n" not in err
    assert err.startswith(str(tmp_path / "ExperimentRuns" / "bad"))
    assert "no denoised.zarr (tomogram types found: VoxelSpacing10.000: isonetcorrected, wbp)" in err
    assert "--tomo-type" in err
    assert "no VoxelSpacing<s>/ folder" in str(runs["empty"].error())
    assert run_tomograms(open_project(tmp_path), tomo_type="wbp")[0].path.name == "wbp.zarr"


def test_inputs_that_are_not_projects(tmp_path):
    with pytest.raises(InputError, match="no ExperimentRuns/ folder here"):
        open_project(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        open_project(tmp_path / "nope")
    (tmp_path / "ExperimentRuns").mkdir()
    with pytest.raises(InputError, match="no run folders"):
        run_tomograms(open_project(tmp_path))
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"overlay_root": str(tmp_path / "elsewhere")}))
    with pytest.raises(InputError, match="holds an ExperimentRuns/ folder"):
        open_project(cfg)
    cfg.write_text("{oops")
    with pytest.raises(InputError, match="not valid JSON"):
        open_project(cfg)


def test_project_picks_from_both_roots_and_both_namings(tmp_path):
    static, overlay = tmp_path / "static", tmp_path / "overlay"
    make_run(static, "TS_1")
    write_picks(overlay, "TS_1", "ribosome", [[1, 2, 3]], [1.0], user_id="curation")
    kaggle = overlay / "ExperimentRuns" / "TS_2" / "Picks" / "apo-ferritin.json"
    kaggle.parent.mkdir(parents=True)
    kaggle.write_text(json.dumps({"pickable_object_name": "apo-ferritin", "user_id": "curation", "session_id": "0",
                                  "run_name": "TS_2", "points": [{"location": {"x": 4, "y": 5, "z": 6}}]}))
    write_picks(overlay, "TS_2", "apo-ferritin", [[7, 8, 9]], [0.5], user_id="motorfinder")
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"static_root": str(static), "overlay_root": str(overlay)}))
    project = open_project(cfg)
    assert run_names(project) == ["TS_1", "TS_2"]
    got = sorted((e, p.object_name, p.user_id, p.xyz_A.tolist()[0]) for e, p in project_picks(project))
    assert got == [("TS_1", "ribosome", "curation", [1, 2, 3]), ("TS_2", "apo-ferritin", "curation", [4, 5, 6]),
                   ("TS_2", "apo-ferritin", "motorfinder", [7, 8, 9])]
    assert len(project_picks(project, user_id="curation")) == 2
