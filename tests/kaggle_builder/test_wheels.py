"""The Kaggle image's package list and the offline wheels: resolution, groups, what ships (no network here)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from inference.common.errors import InputError
from kaggle_builder.image import ImagePackage, KaggleImage, canonical, load_image, requirement_name
from kaggle_builder.wheels import (
    ONNXRUNTIME_GPU,
    Resolved,
    Wheelhouse,
    bundle_wheels,
    default_cache_dir,
    package_requirements,
    wheel_groups,
)

SEED = ["numpy", "pandas", "scipy", "pillow", "opencv-python-headless", "pyyaml", "tqdm", "matplotlib", "onnx"]


def test_the_image_list_has_the_seed_its_versions_and_sources():
    image = load_image()
    assert [p.name for p in image.seed] == SEED
    assert all(p.version and p.source in ("[K]", "[C]") for p in image.seed)
    assert image.version_of("onnx") == "1.18.0" and image.version_of("matplotlib").startswith("3.7.")  # [K] pins
    assert "cupy-cuda12x" in image.names() and image.version_of("cupy-cuda12x") is None
    assert not {"onnxruntime", "onnxruntime-gpu", "tensorrt", "mrcfile", "simplejpeg"} & image.names()
    assert image.python_version == "3.11" and image.platforms[0] == "manylinux_2_28_x86_64"
    assert "cupy-cuda12x" not in " ".join(image.pins())  # no version known: not a constraint
    assert canonical("PyYAML") == canonical("pyyaml") == "pyyaml" and canonical("typing_extensions") == "typing-extensions"


def test_a_malformed_image_line_is_one_error(tmp_path):
    path = tmp_path / "image.txt"
    path.write_text("# header\nnumpy==1.26.4 seed [C]\nnumpy 1.26 seed\n")
    with pytest.raises(InputError, match="line 3"):
        load_image(path)
    path.write_text("numpy==1.26.4 sometimes [C]\n")
    with pytest.raises(InputError, match="ROLE in seed/gpu"):
        load_image(path)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MOTORFINDER_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MOTORFINDER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "motorfinder"


# ------------------------------------------------------------------------------ resolution


class Recorder:
    """A stand-in for subprocess.run: records commands; answers pip's --report with ``items``."""

    def __init__(self, items=None, rc=0, stderr=""):
        self.items, self.rc, self.stderr, self.calls = items or [], rc, stderr, []

    def __call__(self, cmd, **kw):
        self.calls.append((cmd, kw))
        if "--report" in cmd and self.rc == 0:
            Path(cmd[cmd.index("--report") + 1]).write_text(json.dumps({"install": self.items}))
        if "-c" in cmd:
            self.constraints = Path(cmd[cmd.index("-c") + 1]).read_text()
        return subprocess.CompletedProcess(cmd, self.rc, "", self.stderr)


def item(name, version, url):
    return {"metadata": {"name": name, "version": version}, "download_info": {"url": url}}


def test_resolve_is_pip_offline_for_kaggles_python_with_the_image_pinned(tmp_path):
    image = load_image()
    rec = Recorder([item("PyYAML", "6.0.2", f"file://{tmp_path}/PyYAML-6.0.2-cp311.whl"),
                    item("mrcfile", "1.5.4", f"file://{tmp_path}/mrcfile%2Bx-1.5.4-py2.py3-none-any.whl")])
    house = Wheelhouse(tmp_path, image, runner=rec)
    got = house.resolve(["mrcfile>=1.4"])
    assert got == [Resolved("pyyaml", "6.0.2", tmp_path / "PyYAML-6.0.2-cp311.whl"),
                   Resolved("mrcfile", "1.5.4", tmp_path / "mrcfile+x-1.5.4-py2.py3-none-any.whl")]
    (cmd, kw), = rec.calls
    assert cmd[3:6] == ["install", "--dry-run", "--ignore-installed"] and "--no-index" in cmd
    assert cmd[cmd.index("--find-links") + 1] == str(tmp_path) and cmd[-1] == "mrcfile>=1.4"
    assert cmd[cmd.index("--python-version") + 1] == "3.11" and "--only-binary=:all:" in cmd
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--platform"] == list(image.platforms)
    assert rec.constraints.splitlines() == image.pins()
    env = kw["env"]
    assert env["PIP_CONFIG_FILE"] == os.devnull and not any(k in env for k in ("PIP_FIND_LINKS", "PYTHONPATH"))


def test_resolve_and_fetch_failures_name_the_requirement(tmp_path):
    image = load_image()
    err = "ERROR: No matching distribution found for onnxruntime-gpu<1.27,>=1.20\n"
    with pytest.raises(InputError, match="no wheel of onnxruntime-gpu<1.27,>=1.20"):
        Wheelhouse(tmp_path, image, runner=Recorder(rc=1, stderr=err)).resolve([ONNXRUNTIME_GPU])
    with pytest.raises(InputError, match="no wheel of onnxruntime-gpu.*--no-wheels"):
        Wheelhouse(tmp_path, image, runner=Recorder(rc=1, stderr=err)).fetch([ONNXRUNTIME_GPU])


def test_ensure_downloads_only_when_the_wheelhouse_lacks_something(tmp_path):
    image = load_image()
    rec = Recorder([item("mrcfile", "1.5.4", f"file://{tmp_path}/m.whl")])
    house = Wheelhouse(tmp_path, image, extra_index_urls=("https://example.invalid/simple",), runner=rec)
    house.ensure(["mrcfile"])
    assert [c[0][3] for c in rec.calls] == ["install"]  # resolved offline: no download
    attempts = []

    def flaky(cmd, **kw):
        attempts.append(cmd[3])
        if cmd[3] == "install" and attempts.count("install") == 1:
            return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for mrcfile\n")
        return rec(cmd, **kw)

    house.run = flaky
    house.ensure(["mrcfile"])
    assert attempts == ["install", "download", "install"]
    download = rec.calls[-2][0]
    assert "--no-index" not in download and download[download.index("--extra-index-url") + 1].startswith("https://")
    assert "env" not in rec.calls[-2][1]  # downloads go through the user's pip configuration


def test_bundle_ships_what_the_image_lacks_in_the_first_group_that_needs_it(tmp_path):
    image = KaggleImage(packages=(ImagePackage("numpy", "1.26.4", "seed", "[C]"),
                                  ImagePackage("onnx", "1.18.0", "seed", "[K]")))
    w = {n: tmp_path / f"{n}-1.0-py3-none-any.whl" for n in
         ("numpy", "onnx", "protobuf", "packaging", "mrcfile", "flatbuffers", "onnxruntime-gpu", "motorfinder")}
    for p in w.values():
        p.write_bytes(b"w")
    seed = {"numpy", "onnx", "protobuf"}
    with_pkg = seed | {"motorfinder", "mrcfile", "packaging"}
    final = with_pkg | {"onnxruntime-gpu", "flatbuffers"}

    class FakeHouse(Wheelhouse):
        def resolve(self, requirements):
            names = final if ONNXRUNTIME_GPU in requirements else with_pkg if any(
                r.endswith(".whl") for r in requirements) else seed
            return [Resolved(n, "1.0", w[n]) for n in sorted(names)]

    shipped = bundle_wheels(FakeHouse(tmp_path, image), w["motorfinder"], wheel_groups())
    assert [(s.group, s.name) for s in shipped] == [("motorfinder", "mrcfile"), ("motorfinder", "packaging"),
                                                     ("onnxruntime-gpu", "flatbuffers"),
                                                     ("onnxruntime-gpu", "onnxruntime-gpu")]
    assert all(s.path == w[s.name] for s in shipped)


def test_package_requirements_read_from_the_wheel(tmp_path):
    import zipfile

    wheel = tmp_path / "motorfinder-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("motorfinder-0.1.0.dist-info/METADATA", "Name: motorfinder\nRequires-Dist: numpy>=1.24\n"
                    "Requires-Dist: mrcfile>=1.4\nRequires-Dist: onnxruntime>=1.17; extra == \"cpu\"\n")
    assert package_requirements(wheel) == ["numpy>=1.24", "mrcfile>=1.4"]


def test_fetch_keeps_the_package_wheel_out_of_the_wheelhouse(tmp_path):
    """pip download copies a local wheel it is given into the wheelhouse; the build's own wheel must not stay."""
    import shutil

    pkg = tmp_path / "build" / "motorfinder-0.1.0-py3-none-any.whl"
    pkg.parent.mkdir()
    pkg.write_bytes(b"w")
    house_dir = tmp_path / "house"

    def pip(cmd, **kw):
        dest = Path(cmd[cmd.index("-d") + 1])
        for r in cmd:
            if r.endswith(".whl") and Path(r).is_file():
                shutil.copy2(r, dest)
        (dest / "mrcfile-1.5.4-py2.py3-none-any.whl").write_bytes(b"w")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    Wheelhouse(house_dir, load_image(), runner=pip).fetch([str(pkg), "mrcfile"])
    assert sorted(p.name for p in house_dir.iterdir()) == ["mrcfile-1.5.4-py2.py3-none-any.whl"]


def test_tensorrt_is_one_pinned_version_and_its_module_wheel_is_built_from_the_sdist(tmp_path):
    from kaggle_builder.wheels import SDIST_ONLY, TENSORRT, TENSORRT_VERSION

    (trt,) = [g for g in wheel_groups(tensorrt=True) if g.name == "tensorrt"]
    assert trt.requirements == TENSORRT
    assert {r.split("==")[0] for r in TENSORRT} == {"tensorrt-cu12", "tensorrt-cu12-bindings", "tensorrt-cu12-libs"}
    assert {r.split("==")[1] for r in TENSORRT} == {TENSORRT_VERSION} and TENSORRT_VERSION.startswith("10.")
    assert "tensorrt" not in {g.name for g in wheel_groups(tensorrt=False)}

    rec = Recorder()
    house = Wheelhouse(tmp_path, load_image(), extra_index_urls=("https://pypi.nvidia.com",), runner=rec)
    house.fetch(list(TENSORRT))
    (build, *_), (download, *_) = rec.calls
    assert build[3:6] == ["wheel", "--no-deps", "--disable-pip-version-check"]
    assert build[build.index("-w") + 1] == str(tmp_path) and f"tensorrt-cu12=={TENSORRT_VERSION}" in build
    assert download[3] == "download" and download[download.index("--find-links") + 1] == str(tmp_path)
    assert download[download.index("--extra-index-url") + 1] == "https://pypi.nvidia.com"
    assert "tensorrt-cu12" in SDIST_ONLY

    rec.calls.clear()  # the built wheel is in the wheelhouse: not built again
    (tmp_path / f"tensorrt_cu12-{TENSORRT_VERSION}-py3-none-any.whl").write_bytes(b"wheel")
    house.fetch(list(TENSORRT))
    assert [c[0][3] for c in rec.calls] == ["download"]


def test_a_sdist_that_does_not_build_is_one_error(tmp_path):
    rec = Recorder(rc=1, stderr="ERROR: Could not find a version that satisfies the requirement tensorrt-cu12==10.16.1.11"
                                " (from versions: none)\nERROR: No matching distribution found for "
                                "tensorrt-cu12==10.16.1.11\n")
    house = Wheelhouse(tmp_path, load_image(), runner=rec)
    with pytest.raises(InputError, match="cannot build the wheel of tensorrt-cu12==10.16.1.11 from its sdist: no wheel"):
        house.fetch(["tensorrt-cu12==10.16.1.11"])


def test_with_tensorrt_uses_nvidias_index_unless_told_otherwise(tmp_path):
    from kaggle_builder.config import BuildConfig
    from kaggle_builder.wheels import NVIDIA_INDEX

    base = BuildConfig(manifest=tmp_path / "m.yaml", out=tmp_path / "out")
    assert base.index_urls == ()
    assert BuildConfig(manifest=base.manifest, out=base.out, tensorrt_wheels=True).index_urls == (NVIDIA_INDEX,)
    mine = BuildConfig(manifest=base.manifest, out=base.out, tensorrt_wheels=True, extra_index_urls=("https://x",))
    assert mine.index_urls == ("https://x",)


@pytest.mark.parametrize("requirement,name", [
    ("numpy (>=1.0)", "numpy"), ("numpy(>=1.0)", "numpy"), ("PyYAML>=6; python_version<'4'", "pyyaml"),
    ("tensorrt-cu12>=10,<11", "tensorrt-cu12"), ("ensemble_boxes", "ensemble-boxes"),
    ("opencv-python-headless[extra]", "opencv-python-headless"), ("mrcfile~=1.4", "mrcfile"), ("a!=2", "a"),
])
def test_requirement_name(requirement, name):
    assert requirement_name(requirement) == name
