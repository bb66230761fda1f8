"""Ensemble CLI: predict (3d + 2d) -> per-member candidates -> fuse -> submit == predict's submission."""

import numpy as np
import pandas as pd
import pytest

from inference.cli.main import main
from inference.common.errors import InputError
from inference.ensemble.candidates import load_candidates


@pytest.fixture(scope="module")
def ens(tmp_path_factory):
    root = tmp_path_factory.mktemp("ens")
    assert main(["-q", "synth", "--out", str(root / "data"), "--n", "5", "--seed", "21", "--split", "test",
                 "--scale", "0.15", "--no-progress"]) == 0
    assert main(["-q", "demo-models", "--out", str(root / "models"), "--with-2d"]) == 0
    assert main(["-q", "predict", "--manifest", str(root / "models" / "manifest.yaml"),
                 "--input", str(root / "data" / "test"), "--output", str(root / "sub.csv"),
                 "--spacing-csv", str(root / "data" / "test_labels.csv"), "--candidates-dir", str(root / "cands"),
                 "--sample-submission", str(root / "data" / "sample_submission.csv"), "--no-progress"]) == 0
    return root


def test_predict_writes_members_and_fused(ens):
    names = sorted(p.name for p in (ens / "cands").iterdir())
    assert names == ["demo2d.csv", "demo3d.csv", "fused.csv"]
    for n in names:
        load_candidates(ens / "cands" / n)  # valid tables


def test_round_trip_fuse_submit_equals_predict(ens, capsys):
    c = ens / "cands"
    assert main(["fuse", "--candidates", str(c / "demo3d.csv"), str(c / "demo2d.csv"), "--weights", "1", "1",
                 "--dist-A", "1000", "--conf-type", "avg", "--output", str(ens / "fused2.csv")]) == 0
    a = pd.read_csv(c / "fused.csv")
    b = pd.read_csv(ens / "fused2.csv")
    pd.testing.assert_frame_equal(a, b)
    assert main(["submit", "--candidates", str(ens / "fused2.csv"), "--fixed", "0.55", "--sample-submission",
                 str(ens / "data" / "sample_submission.csv"), "--output", str(ens / "sub2.csv")]) == 0
    assert "tomograms get a motor" in capsys.readouterr().out
    assert (ens / "sub2.csv").read_text() == (ens / "sub.csv").read_text()


def test_quantile_submit_reports_threshold(ens, capsys):
    assert main(["submit", "--candidates", str(ens / "cands" / "fused.csv"), "--quantile", "0.55",
                 "--sample-submission", str(ens / "data" / "sample_submission.csv"),
                 "--output", str(ens / "subq.csv")]) == 0
    out = capsys.readouterr().out
    sub = pd.read_csv(ens / "subq.csv")
    n_motor = int((sub["Motor axis 0"] != -1).sum())
    assert f"{n_motor} of {len(sub)} tomograms get a motor" in out
    # 5 tomograms, q = 0.55: the threshold sits between the 3rd and 4th best conf -> 2 motors at most
    assert n_motor <= 2


def test_wbf_iou_method_runs(ens):
    c = ens / "cands"
    assert main(["-q", "fuse", "--candidates", str(c / "demo3d.csv"), str(c / "demo2d.csv"), "--method", "wbf_iou",
                 "--box-A", "1000", "--output", str(ens / "fused_iou.csv")]) == 0
    df = load_candidates(ens / "fused_iou.csv")
    assert len(df) > 0 and set(df.tomo_id) <= set(pd.read_csv(c / "fused.csv").tomo_id) | set(df.tomo_id)


def test_show_writes_png(ens):
    tomo = sorted((ens / "data" / "test").iterdir())[0]
    out = ens / "view.png"
    assert main(["-q", "show", "--tomogram", str(tomo), "--candidates", str(ens / "cands" / "demo3d.csv"),
                 str(ens / "cands" / "demo2d.csv"), str(ens / "cands" / "fused.csv"),
                 "--labels", str(ens / "data" / "test_labels.csv"), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


@pytest.mark.parametrize("content,match", [
    ("tomo_id,z,y,x,conf\nt,1,2,3,0.5\n", "missing column"),
    ("tomo_id,z,y,x,conf,voxel_spacing\nt,1,2,3,0.5,10\nt,1,nan,3,0.5,10\n", r"row 2 \(line 3\): column 'y'"),
    ("tomo_id,z,y,x,conf,voxel_spacing\nt,1,2,3,0.5,10\nt,1,2,3,abc,10\n", r"row 2 \(line 3\): column 'conf'"),
    ("tomo_id,z,y,x,conf,voxel_spacing\nt,1,2,3,-0.5,10\n", r"row 1 \(line 2\): conf"),
    ("tomo_id,z,y,x,conf,voxel_spacing\nt,1,2,3,0.5,0\n", "voxel_spacing 0.0 must be > 0"),
    ("tomo_id,z,y,x,conf,voxel_spacing\nt,1,2,3,0.5,10\nt,1,2,3,0.5,12\n", "several voxel spacings"),
])
def test_bad_candidate_files_name_file_and_row(tmp_path, content, match):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(InputError, match=match) as info:
        load_candidates(p)
    assert "bad.csv" in str(info.value)


def test_fuse_spacing_disagreement_between_files(tmp_path, capsys):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("tomo_id,z,y,x,conf,voxel_spacing\nt,1,2,3,0.5,10\n")
    b.write_text("tomo_id,z,y,x,conf,voxel_spacing\nt,1,2,3,0.5,12\n")
    assert main(["fuse", "--candidates", str(a), str(b), "--output", str(tmp_path / "f.csv")]) == 2
    err = capsys.readouterr().err
    assert "b.csv" in err and "row 1 (line 2)" in err and "voxel_spacing" in err
    assert main(["fuse", "--candidates", str(a), str(b), "--weights", "1", "--output", str(tmp_path / "f.csv")]) == 2
    assert "weights" in capsys.readouterr().err


def test_iou_fusion_joins_overlapping_cubes():
    from inference.ensemble.fusion_iou import fuse_points_iou

    # cubes of 1000 Å offset by 200 Å along x: IoU = 800/1200 = 0.667 > 0.55 -> one cluster
    fused, conf = fuse_points_iou([np.array([[0, 0, 0]]), np.array([[0, 0, 200]])], [[0.8], [0.4]], [1, 1],
                                  box_A=1000, iou_thr=0.55)
    assert len(fused) == 1
    # the library computes in float32: agree to 1e-3 Å
    np.testing.assert_allclose(fused[0], [0, 0, (0.8 * 0 + 0.4 * 200) / 1.2], atol=1e-3)
    np.testing.assert_allclose(conf, [(0.8 + 0.4) / 2])
    # offset 400 Å: IoU = 600/1400 = 0.43 -> two clusters, each conf / 2
    fused, conf = fuse_points_iou([np.array([[0, 0, 0]]), np.array([[0, 0, 400]])], [[0.8], [0.4]], [1, 1],
                                  box_A=1000, iou_thr=0.55)
    assert len(fused) == 2
    np.testing.assert_allclose(conf, [0.4, 0.2])
