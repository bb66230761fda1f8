"""The OME-Zarr reader (inference.io.omezarr), its writer, and sources listed in a text file."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from inference.common.errors import InputError
from inference.io.readers import read_volume
from inference.io.sources import list_sources, tomo_id_of

zarr = pytest.importorskip("zarr", minversion="3", reason="the OME-Zarr reader needs zarr >= 3 (Python >= 3.11)")

from inference.io.omezarr import LevelMap, choose_level, open_store, read_omezarr
from inference.synth.omezarr_write import downsample2, write_omezarr


def volume(shape=(21, 34, 40), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Fix:" in text
    return text


# --- levels, units, spacing -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", [2, 3])
def test_levels_roundtrip_with_spacing_and_map(tmp_path, fmt):
    v = volume()
    write_omezarr(tmp_path / "tomo_a.zarr", v, 6.5, levels=3, chunks=(8, 16, 16), zarr_format=fmt)
    meta = "zarr.json" if fmt == 3 else ".zattrs"
    assert (tmp_path / "tomo_a.zarr" / meta).is_file()
    data, spacing, lm = read_omezarr(tmp_path / "tomo_a.zarr")
    assert data.dtype == np.uint8 and np.array_equal(data, v) and spacing == 6.5 and lm is None
    for k in (1, 2):
        data, spacing, lm = read_omezarr(tmp_path / "tomo_a.zarr", level=k)
        expect = v
        for _ in range(k):
            expect = downsample2(expect)
        assert np.array_equal(data, expect) and spacing == 6.5  # the spacing stays level 0's
        f = 2.0 ** k
        assert lm == LevelMap(level=k, factor=(f, f, f), offset=((f - 1) / 2,) * 3, base_shape=v.shape)
        # voxel j of level k is the mean of level-0 voxels f*j .. f*j + f - 1: its centre is f*j + (f-1)/2
        assert np.allclose(lm.to_base([[0, 1, 2]]), [[(f - 1) / 2, f + (f - 1) / 2, 2 * f + (f - 1) / 2]])


def test_downsample_is_the_block_mean():
    v = np.arange(2 * 4 * 6, dtype=np.uint8).reshape(2, 4, 6)
    d = downsample2(v)
    assert d.shape == (1, 2, 3)
    assert d[0, 1, 2] == round(np.mean(v[0:2, 2:4, 4:6]) + 1e-9)
    f = downsample2(v.astype(np.float32) / 7)
    assert f.dtype == np.float32 and f[0, 0, 0] == pytest.approx(np.mean(v[:2, :2, :2] / 7))


def test_nanometer_unit_and_other_types_become_float32(tmp_path):
    v = volume((9, 10, 11)).astype(np.int16) - 100
    write_omezarr(tmp_path / "t.zarr", v, 13.1, levels=1, chunks=(4, 4, 4), unit="nanometer")
    data, spacing, _ = read_omezarr(tmp_path / "t.zarr")
    assert data.dtype == np.float32 and np.array_equal(data, v.astype(np.float32))  # read slab by slab
    assert spacing == pytest.approx(13.1)


def test_axes_in_another_order_and_a_channel_axis(tmp_path):
    v = volume((5, 6, 7))
    g = zarr.open_group(str(tmp_path / "t.zarr"), mode="w", zarr_format=2)
    arr = g.create_array("s0", shape=(1, 7, 6, 5), dtype=np.uint8, chunks=(1, 3, 3, 3))
    arr[...] = v.transpose(2, 1, 0)[None]  # c, x, y, z
    g.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": "c", "type": "channel"}] + [
        {"name": n, "type": "space", "unit": "angstrom"} for n in "xyz"],
        "datasets": [{"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [1, 12, 11, 10]}]}]}]
    data, spacing, _ = read_omezarr(tmp_path / "t.zarr")
    assert np.array_equal(data, v) and spacing == 12  # x's scale, whatever the order
    assert data.flags.c_contiguous


def test_auto_level_is_the_coarsest_not_coarser_than_the_target(tmp_path):
    write_omezarr(tmp_path / "a.zarr", volume((32, 32, 32)), 6.5, levels=3)  # 6.5, 13, 26 Å
    store = open_store(tmp_path / "a.zarr")
    assert choose_level(store, "auto", 16.0, None) == 1
    assert choose_level(store, "auto", 13.0, None) == 1
    assert choose_level(store, "auto", 12.8, None) == 0  # 13 Å is 1.6 % coarser
    assert choose_level(store, "auto", 100.0, None) == 2
    assert choose_level(store, "auto", 5.0, None) == 0  # all coarser: the finest there is
    assert choose_level(store, "auto", 16.0, 4.0) == 2  # the spacing CSV says level 0 is 4 Å: 16 Å is level 2
    write_omezarr(tmp_path / "b.zarr", volume((32, 32, 32)), 8.05, levels=2)  # 16.1 Å: within 1 % of 16
    assert choose_level(open_store(tmp_path / "b.zarr"), "auto", 16.0, None) == 1
    write_omezarr(tmp_path / "c.zarr", volume((32, 32, 32)), 8.2, levels=2)  # 16.4 Å: 2.5 % coarser
    assert choose_level(open_store(tmp_path / "c.zarr"), "auto", 16.0, None) == 0
    with pytest.raises(InputError, match=r"has 3 level\(s\) \(0..2\); level 3 was asked"):
        choose_level(store, 3, None, None)


def test_no_unit_means_no_spacing_and_auto_reads_level_0(tmp_path, caplog):
    write_omezarr(tmp_path / "t.zarr", volume((8, 8, 8)), 10.0, levels=2)
    meta = json.loads((tmp_path / "t.zarr" / ".zattrs").read_text())
    for axis in meta["multiscales"][0]["axes"]:
        del axis["unit"]
    (tmp_path / "t.zarr" / ".zattrs").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        data, spacing, lm = read_omezarr(tmp_path / "t.zarr", level="auto", target_A=16.0)
    assert spacing is None and lm is None and data.shape == (8, 8, 8)
    assert any("no unit" in r.getMessage() for r in caplog.records)


# --- errors: one line naming the file and the fix --------------------------------------------


@pytest.fixture
def store(tmp_path):
    write_omezarr(tmp_path / "tomo_e.zarr", volume((8, 8, 8)), 10.0, levels=2)
    return tmp_path / "tomo_e.zarr"


def edit_attrs(store: Path, change) -> None:
    meta = json.loads((store / ".zattrs").read_text())
    change(meta["multiscales"][0])
    (store / ".zattrs").write_text(json.dumps(meta))


def test_missing_and_malformed_metadata(store, tmp_path):
    (store / ".zattrs").unlink()
    with pytest.raises(InputError) as e:
        read_volume(store)
    assert one_line(e).startswith(f"{store}/.zattrs: .zattrs is missing.")
    (store / ".zattrs").write_text('{"multiscales": [')
    with pytest.raises(InputError) as e:
        read_volume(store)
    assert one_line(e).startswith(f"{store / '.zattrs'}: malformed JSON")
    (store / ".zattrs").write_text('{"other": 1}')
    with pytest.raises(InputError, match="no OME-NGFF 'multiscales' metadata in .zattrs"):
        read_volume(store)
    write_omezarr(tmp_path / "v3.zarr", volume((8, 8, 8)), 10.0, levels=1, zarr_format=3)
    (tmp_path / "v3.zarr" / "zarr.json").write_text("{nope")
    with pytest.raises(InputError) as e:
        read_volume(tmp_path / "v3.zarr")
    assert one_line(e).startswith(f"{tmp_path / 'v3.zarr' / 'zarr.json'}: malformed JSON")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(InputError) as e:
        read_volume(tmp_path / "empty.zarr")
    assert "not a zarr group (no zarr.json or .zgroup)" in one_line(e)
    with pytest.raises(InputError, match="does not exist"):
        read_volume(tmp_path / "gone.zarr")


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(axes=[{"name": n, "type": "space", "unit": "angstrom"} for n in "cyx"]),
     "a tomogram needs the spatial axes z, y and x"),
    (lambda m: [a.update(unit="micrometer") for a in m["axes"]],
     "unit 'micrometer'; the reader knows angstrom and nanometer"),
    (lambda m: m["axes"][0].pop("unit"), "axes y, x have a unit but z has none"),
    (lambda m: m["datasets"][0].update(coordinateTransformations=[{"type": "scale", "scale": [1, 1]}]),
     "datasets[0] scale must be 3 positive numbers"),
    (lambda m: m["datasets"][0].pop("coordinateTransformations"), "datasets[0].coordinateTransformations is missing"),
    (lambda m: m.update(datasets=[]), "lists no levels"),
])
def test_bad_multiscales_metadata(store, change, message):
    edit_attrs(store, change)
    with pytest.raises(InputError) as e:
        read_volume(store)
    text = one_line(e)
    assert text.startswith(f"{store}/.zattrs: ") and message in text


def test_missing_level_wrong_channel_and_corrupt_chunks(store):
    shutil.rmtree(store / "1")
    with pytest.raises(InputError) as e:
        read_volume(store, zarr_level=1)
    assert "level 1 (array '1') is listed in" in one_line(e)
    assert np.array_equal(read_volume(store).data, volume((8, 8, 8)))  # level 0 is still fine
    chunk = next(p for p in (store / "0").iterdir() if not p.name.startswith("."))
    chunk.write_bytes(b"garbage" * 5)
    with pytest.raises(InputError) as e:
        read_volume(store)
    assert "cannot read level 0" in one_line(e)


def test_zarr_missing_is_one_line(monkeypatch, store):
    import sys

    monkeypatch.setitem(sys.modules, "zarr", None)  # import zarr raises ImportError
    with pytest.raises(InputError) as e:
        read_volume(store)
    assert "pip install 'motorfinder[zarr]'" in one_line(e)


# --- sources: .zarr folders, listings, URLs --------------------------------------------------


def test_zarr_folders_are_sources_and_their_ids(tmp_path):
    write_omezarr(tmp_path / "TS_026.zarr", volume((4, 4, 4)), 10.0, levels=1)
    np.save(tmp_path / "tomo_a.npy", np.zeros((2, 3, 4), np.uint8))
    assert [tomo_id_of(s) for s in list_sources(tmp_path)] == ["TS_026", "tomo_a"]
    assert list_sources(tmp_path / "TS_026.zarr") == [tmp_path / "TS_026.zarr"]
    assert tomo_id_of("s3://bucket/10000/TS_026/Tomograms/100/TS_026.zarr/") == "TS_026"
    vol = read_volume(tmp_path / "TS_026.zarr")
    assert vol.tomo_id == "TS_026" and vol.header_spacing == 10.0


def test_listing_file(tmp_path, caplog):
    write_omezarr(tmp_path / "data" / "b.zarr", volume((4, 4, 4)), 10.0, levels=1)
    np.save(tmp_path / "data" / "a.npy", np.zeros((2, 3, 4), np.uint8))
    listing = tmp_path / "sources.txt"
    listing.write_text(f"# two tomograms and a missing one\n\ndata/b.zarr\n  {tmp_path / 'data' / 'a.npy'}  \n"
                       "data/c.zarr\n")
    with caplog.at_level(logging.WARNING):
        sources = list_sources(listing)
    assert sources == [tmp_path / "data" / "a.npy", tmp_path / "data" / "b.zarr", tmp_path / "data" / "c.zarr"]
    assert any("1 listed source(s) do not exist" in r.getMessage() for r in caplog.records)
    listing.write_text("data/b.zarr\nother/b.zarr\n")
    with pytest.raises(InputError, match=r"line 2: tomo_id 'b' is already on line 1"):
        list_sources(listing)
    listing.write_text("# nothing\n")
    with pytest.raises(InputError, match="names no tomogram sources"):
        list_sources(listing)
    (tmp_path / "labels.csv").write_text("tomo_id\n")
    with pytest.raises(InputError, match="or a .txt file listing them"):
        list_sources(tmp_path / "labels.csv")


def test_url_sources_through_fsspec(tmp_path):
    pytest.importorskip("fsspec", reason="URL sources need fsspec")
    v = volume((6, 7, 8))
    write_omezarr(tmp_path / "TS_1.zarr", v, 16.0, levels=2)
    url = f"file://{tmp_path / 'TS_1.zarr'}"
    listing = tmp_path / "urls.txt"
    listing.write_text(url + "\n")
    (source,) = list_sources(listing)
    assert source == url and tomo_id_of(source) == "TS_1"
    vol = read_volume(source, zarr_level=1)
    assert vol.source == url and vol.header_spacing == 16.0 and np.array_equal(vol.data, downsample2(v))


def test_url_without_fsspec_is_refused_at_listing(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "fsspec", None)
    listing = tmp_path / "urls.txt"
    listing.write_text("s3://bucket/TS_1.zarr\n")
    with pytest.raises(InputError, match="line 1: reading a URL needs fsspec"):
        list_sources(listing)


def test_synth_writes_ome_zarr(tmp_path):
    from inference.synth.generate import generate

    labels = generate(tmp_path, 2, 5, split="test", scale=0.1, progress=False, fmt="zarr")
    sources = list_sources(tmp_path / "test")
    assert [tomo_id_of(s) for s in sources] == sorted(labels["tomo_id"].unique())
    for s in sources:
        row = labels[labels["tomo_id"] == tomo_id_of(s)].iloc[0]
        vol = read_volume(s)
        assert vol.header_spacing == row["Voxel spacing"] and vol.data.dtype == np.uint8
        assert vol.data.shape == tuple(row[f"Array shape (axis {i})"] for i in range(3))
        assert len(open_store(s).levels) == 3
