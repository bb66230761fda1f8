"""Tests for inference.io.readers and inference.io.image_decoders (small synthetic tomograms, fast)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from inference.common.errors import InputError
from inference.io import image_decoders
from inference.io.image_decoders import available_decoders, get_decoder
from inference.io.readers import Volume, iter_volumes, read_mrc, read_npy, read_slices, read_volume
from inference.io.sources import list_sources, scan_sources, slice_files, tomo_id_of
from inference.io.spacing import load_spacing_table, resolve_spacing

Image = pytest.importorskip("PIL.Image")  # writes the test images (a core dependency)
mrcfile = pytest.importorskip("mrcfile")

SHAPE = (16, 12)  # Y, X of one slice
DECODERS = ["simplejpeg", "cv2", "pil"]


def texture(z: int, shape=SHAPE) -> np.ndarray:
    """A smooth 8-bit slice that JPEG reproduces closely."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    return (100 + 40 * np.sin(y / 3 + z) + 30 * np.cos(x / 4)).astype(np.uint8)


def write_png(path: Path, img: np.ndarray) -> Path:
    Image.fromarray(img).save(path, format="PNG")  # uint8 -> 8-bit, uint16 -> 16-bit gray, HxWx3 -> RGB
    return path


def write_jpeg(path: Path, img: np.ndarray, quality: int = 95) -> Path:
    Image.fromarray(img).save(path, format="JPEG", quality=quality)
    return path


def make_tomo(folder: Path, n: int = 8, fmt: str = "jpg", pad: int = 4) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    vol = np.stack([texture(z) for z in range(n)])
    for z in range(n):
        name = folder / f"slice_{z:0{pad}d}.{fmt}"
        (write_jpeg if fmt == "jpg" else write_png)(name, vol[z])
    return vol


def write_mrc(path: Path, data: np.ndarray, voxel_size=(10.0, 10.0, 10.0)) -> Path:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel_size
    return path


# --- slice files --------------------------------------------------------------------------


def test_slices_ordered_by_number_not_name(tmp_path):
    folder = tmp_path / "tomo_a"
    folder.mkdir()
    for z in range(12):  # unpadded: slice_10 sorts before slice_2 by name
        write_png(folder / f"slice_{z}.png", np.full(SHAPE, z, np.uint8))
    names = [p.name for p in slice_files(folder)]
    assert names[9:] == ["slice_9.png", "slice_10.png", "slice_11.png"]
    vol = read_slices(folder, threads=2)
    assert vol.shape == (12, *SHAPE) and vol.dtype == np.uint8
    assert vol[:, 0, 0].tolist() == list(range(12))
    assert (vol == np.arange(12, dtype=np.uint8)[:, None, None]).all()


def test_case_insensitive_suffix_and_mixed_extensions(tmp_path):
    folder = tmp_path / "tomo_b"
    folder.mkdir()
    write_png(folder / "slice_0000.png", np.full(SHAPE, 5, np.uint8))
    write_png(folder / "x.png", np.zeros(SHAPE, np.uint8))  # not a slice: ignored
    (folder / "notes.txt").write_text("ignored")
    png = folder / "slice_0001.png"
    write_png(png, np.full(SHAPE, 7, np.uint8))
    png.rename(folder / "slice_0001.PNG")
    write_jpeg(folder / "slice_2.JPEG", texture(2))
    assert [p.name for p in slice_files(folder)] == ["slice_0000.png", "slice_0001.PNG", "slice_2.JPEG"]
    vol = read_slices(folder)
    assert vol[0, 0, 0] == 5 and vol[1, 0, 0] == 7


def test_gap_names_missing_numbers(tmp_path):
    folder = tmp_path / "tomo_gap"
    folder.mkdir()
    for z in (0, 1, 2, 5, 6, 8):
        write_png(folder / f"slice_{z:04d}.png", np.zeros(SHAPE, np.uint8))
    with pytest.raises(InputError) as err:
        slice_files(folder)
    msg = str(err.value)
    assert str(folder) in msg and "3, 4, 7" in msg and "missing" in msg
    assert err.value.fix


def test_must_start_at_zero(tmp_path):
    folder = tmp_path / "tomo_one"
    folder.mkdir()
    for z in (1, 2, 3):
        write_png(folder / f"slice_{z:04d}.png", np.zeros(SHAPE, np.uint8))
    with pytest.raises(InputError, match="start at 1"):
        slice_files(folder)


def test_duplicate_numbers(tmp_path):
    folder = tmp_path / "tomo_dup"
    folder.mkdir()
    write_png(folder / "slice_0000.png", np.zeros(SHAPE, np.uint8))
    write_jpeg(folder / "slice_0001.jpg", texture(1))
    write_png(folder / "slice_1.png", np.zeros(SHAPE, np.uint8))
    with pytest.raises(InputError) as err:
        slice_files(folder)
    assert "slice_0001.jpg" in str(err.value) and "slice_1.png" in str(err.value)
    assert str(folder) in str(err.value)


def test_empty_folder_and_no_slices(tmp_path):
    empty = tmp_path / "tomo_empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty"):
        slice_files(empty)
    other = tmp_path / "tomo_other"
    other.mkdir()
    write_png(other / "img_0000.png", np.zeros(SHAPE, np.uint8))
    with pytest.raises(InputError, match="img_0000.png"):
        read_slices(other)


def test_different_slice_sizes(tmp_path):
    folder = tmp_path / "tomo_size"
    make_tomo(folder, n=6, fmt="png")
    write_png(folder / "slice_0004.png", np.zeros((SHAPE[0] + 2, SHAPE[1]), np.uint8))
    for threads in (1, 2):
        with pytest.raises(InputError) as err:
            read_slices(folder, threads=threads)
        msg = str(err.value)
        assert "slice_0004.png" in msg and "18x12" in msg and "16x12" in msg


def test_mixed_bit_depth_is_an_error(tmp_path):
    folder = tmp_path / "tomo_depth"
    make_tomo(folder, n=3, fmt="png")
    write_png(folder / "slice_0002.png", np.full(SHAPE, 1000, np.uint16))
    with pytest.raises(InputError, match="slice_0002.png"):
        read_slices(folder)


def test_sixteen_bit_and_rgb_slices(tmp_path):
    folder = tmp_path / "tomo_16"
    folder.mkdir()
    deep = np.arange(2 * SHAPE[0] * SHAPE[1], dtype=np.uint16).reshape(2, *SHAPE) * 50
    for z in range(2):
        write_png(folder / f"slice_{z}.png", deep[z])
    vol = read_slices(folder)
    assert vol.dtype == np.float32 and np.array_equal(vol, deep.astype(np.float32))

    rgb = np.zeros((*SHAPE, 3), np.uint8)
    rgb[..., 0] = 200  # red
    path = write_png(tmp_path / "rgb.png", rgb)
    for name in ("cv2", "pil"):
        if name in available_decoders():
            gray = get_decoder(name)(path)
            assert gray.shape == SHAPE and gray.dtype == np.uint8
            assert abs(int(gray[0, 0]) - round(0.299 * 200)) <= 1


def test_tiff_slices(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    img = np.random.default_rng(3).normal(size=SHAPE).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", img)
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, *SHAPE), np.uint8), photometric="minisblack")
    for name in ("auto", "cv2", "pil"):
        if name != "auto" and name not in available_decoders():
            continue
        decode = get_decoder(name)
        out = decode(tmp_path / "f.tif")
        assert out.dtype == np.float32 and np.array_equal(out, img)
        with pytest.raises(InputError, match="several pages"):
            decode(tmp_path / "stack.tif")


def test_corrupt_jpeg_random_bytes(tmp_path):
    folder = tmp_path / "tomo_bad"
    make_tomo(folder, n=4)
    bad = folder / "slice_0002.jpg"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(InputError) as err:
        read_slices(folder, threads=2)
    assert str(bad) in str(err.value) and "re-extract or re-download" in str(err.value)


def test_corrupt_jpeg_body(tmp_path):
    path = write_jpeg(tmp_path / "slice_0000.jpg", texture(0, (64, 64)))
    data = bytearray(path.read_bytes())
    sos = data.find(b"\xff\xda")
    data[sos + 2: sos + 12] = b"\xff\x00" * 5  # garbage in the scan header
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="slice_0000.jpg"):
        get_decoder("auto")(path)


@pytest.mark.parametrize("name", ["auto", *DECODERS])
def test_truncated_jpeg(tmp_path, name):
    if name != "auto" and name not in available_decoders():
        pytest.skip(f"{name} not installed")
    path = write_jpeg(tmp_path / "slice_0000.jpg", texture(0, (64, 64)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        get_decoder(name)(path)
    assert str(path) in str(err.value) and "truncated" in str(err.value)
    assert "re-extract or re-download" in str(err.value)


def test_empty_and_missing_slice_file(tmp_path):
    empty = tmp_path / "slice_0000.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        get_decoder()(empty)
    with pytest.raises(InputError, match="does not exist"):
        get_decoder()(tmp_path / "nope.jpg")


# --- decoders -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", DECODERS)
def test_each_decoder_same_array(tmp_path, name):
    pytest.importorskip({"simplejpeg": "simplejpeg", "cv2": "cv2", "pil": "PIL"}[name])
    img = texture(3)
    jpg = write_jpeg(tmp_path / "a.jpg", img)
    png = write_png(tmp_path / "a.png", img)
    with Image.open(jpg) as im:
        reference = np.asarray(im.convert("L"))
    decode = get_decoder(name)
    out = decode(jpg)
    assert out.dtype == np.uint8 and out.shape == SHAPE
    assert np.abs(out.astype(int) - reference).max() <= 1  # same libjpeg-turbo, same IDCT
    assert np.abs(out.astype(int) - img).mean() < 3  # quality 95 is close to the original
    if name == "simplejpeg":
        with pytest.raises(InputError, match="cannot read PNG"):
            decode(png)
    else:
        assert np.array_equal(decode(png), img)


def test_auto_falls_back_for_png(tmp_path, monkeypatch):
    img = texture(1)
    png = write_png(tmp_path / "a.png", img)
    assert np.array_equal(get_decoder("auto")(png), img)
    folder = tmp_path / "tomo_png"
    vol = make_tomo(folder, n=3, fmt="png")
    assert np.array_equal(read_slices(folder, decoder="auto"), vol)
    # with cv2 "missing", PNG goes to the next backend that can read it
    monkeypatch.setattr(image_decoders, "available_decoders", lambda: ["simplejpeg", "pil"])
    assert np.array_equal(get_decoder("auto")(png), img)
    monkeypatch.setattr(image_decoders, "available_decoders", lambda: ["simplejpeg"])
    with pytest.raises(InputError, match="no installed decoder can read PNG"):
        get_decoder("auto")(png)


def test_unknown_decoder():
    with pytest.raises(InputError, match="unknown slice decoder"):
        get_decoder("turbo")
    assert available_decoders()  # at least one backend in this environment


def test_speed_order_is_respected():
    names = available_decoders()
    assert names == [n for n in image_decoders.SPEED_ORDER if n in names]


# --- MRC and npy --------------------------------------------------------------------------


def test_mrc_roundtrip_float32(tmp_path, caplog):
    data = np.random.default_rng(1).normal(size=(4, 6, 5)).astype(np.float32)
    path = write_mrc(tmp_path / "tomo_f.mrc", data, (12.5, 12.5, 12.5))
    out, spacing = read_mrc(path)
    assert out.dtype == np.float32 and np.array_equal(out, data) and spacing == pytest.approx(12.5)


def test_mrc_roundtrip_int8_shifts_to_uint8(tmp_path):
    data = np.array([-128, -1, 0, 1, 127] * 12, dtype=np.int8).reshape(3, 4, 5)
    out, spacing = read_mrc(write_mrc(tmp_path / "tomo_i8.mrc", data, (8.0, 8.0, 8.0)))
    assert out.dtype == np.uint8
    assert np.array_equal(out, (data.astype(np.int16) + 128).astype(np.uint8))
    assert spacing == pytest.approx(8.0)


def test_mrc_roundtrip_uint8(tmp_path):
    # mrcfile stores uint8 as mode 6 (uint16); it comes back as float32 with the same values
    data = np.arange(60, dtype=np.uint8).reshape(3, 4, 5) * 4
    out, spacing = read_mrc(write_mrc(tmp_path / "tomo_u8.mrc", data, (16.8, 16.8, 16.8)))
    assert out.dtype == np.float32 and np.array_equal(out, data.astype(np.float32))
    assert spacing == pytest.approx(16.8)


def test_mrc_imod_unsigned_bytes_stay(tmp_path):
    data = np.arange(60, dtype=np.uint8).reshape(3, 4, 5) * 4
    path = write_mrc(tmp_path / "tomo_imod.mrc", data.view(np.int8))
    raw = bytearray(path.read_bytes())
    raw[152:156] = b"IMOD"
    raw[156:160] = (0).to_bytes(4, "little")  # bit 0 clear: unsigned bytes
    path.write_bytes(bytes(raw))
    out, _ = read_mrc(path)
    assert out.dtype == np.uint8 and np.array_equal(out, data)


def test_mrc_voxel_size_zero_and_anisotropic(tmp_path, caplog):
    data = np.zeros((2, 3, 4), np.float32)
    with caplog.at_level(logging.INFO, logger="inference.io"):
        _, spacing = read_mrc(write_mrc(tmp_path / "zero.mrc", data, (0.0, 0.0, 0.0)))
    assert spacing is None and "no voxel size" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="inference.io"):
        _, spacing = read_mrc(write_mrc(tmp_path / "aniso.mrc", data, (10.0, 11.0, 10.0)))
    assert spacing == pytest.approx(10.0) and "anisotropic" in caplog.text


def test_mrc_axis_order_and_placeholder_voxel_size(tmp_path, caplog):
    vol = np.arange(24, dtype=np.float32).reshape(2, 3, 4)  # Z, Y, X
    path = tmp_path / "perm.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(vol.transpose(0, 2, 1).copy())  # columns run along Y, rows along X
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 2, 1, 3
        mrc.voxel_size = 1.0
    with caplog.at_level(logging.WARNING, logger="inference.io"):
        out, spacing = read_mrc(path)
    assert np.array_equal(out, vol) and spacing is None and "1.0" in caplog.text


def test_mrc_nonsense_headers(tmp_path):
    rand = tmp_path / "random.mrc"
    rand.write_bytes(np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(InputError, match="random.mrc"):
        read_mrc(rand)

    good = write_mrc(tmp_path / "good.mrc", np.zeros((2, 3, 4), np.float32))
    for name, nx in (("big.mrc", 400), ("small.mrc", 2)):
        raw = bytearray(good.read_bytes())
        raw[0:4] = np.int32(nx).tobytes()  # header dims no longer match the data
        path = tmp_path / name
        path.write_bytes(bytes(raw))
        with pytest.raises(InputError) as err:
            read_mrc(path)
        assert name in str(err.value)

    raw = bytearray(good.read_bytes())
    raw[12:16] = np.int32(99).tobytes()  # unknown mode
    (tmp_path / "mode.mrc").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="mode"):
        read_mrc(tmp_path / "mode.mrc")

    flat = tmp_path / "flat.mrc"
    with mrcfile.new(flat) as mrc:
        mrc.set_data(np.zeros((3, 4), np.float32))
    with pytest.raises(InputError, match="not a 3D tomogram"):
        read_mrc(flat)


def test_npy(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((4, 5), np.uint8))
    with pytest.raises(InputError, match="3D"):
        read_npy(tmp_path / "flat.npy")
    vol = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    np.save(tmp_path / "u8.npy", vol)
    out = read_npy(tmp_path / "u8.npy")
    assert out.dtype == np.uint8 and isinstance(out, np.memmap) and np.array_equal(out, vol)
    np.save(tmp_path / "i16.npy", vol.astype(np.int16) - 30)
    out = read_npy(tmp_path / "i16.npy")
    assert out.dtype == np.float32 and np.array_equal(out, vol.astype(np.float32) - 30)
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(InputError, match="junk.npy"):
        read_npy(tmp_path / "junk.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="obj.npy"):
        read_npy(tmp_path / "obj.npy")


# --- sources and volumes ------------------------------------------------------------------


def test_list_sources_and_read_volume(tmp_path):
    make_tomo(tmp_path / "tomo_c", n=3)
    write_mrc(tmp_path / "tomo_b.rec", np.zeros((2, 3, 4), np.float32), (15.6, 15.6, 15.6))
    np.save(tmp_path / "tomo_a.npy", np.zeros((2, 3, 4), np.uint8))
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "readme.txt").write_text("not a tomogram")
    sources = list_sources(tmp_path)
    assert [tomo_id_of(s) for s in sources] == ["tomo_a", "tomo_b", "tomo_c"]

    vols = {tomo_id_of(s): read_volume(s) for s in sources}
    assert isinstance(vols["tomo_c"], Volume) and vols["tomo_c"].data.shape == (3, *SHAPE)
    assert vols["tomo_c"].header_spacing is None and vols["tomo_c"].source == tmp_path / "tomo_c"
    assert vols["tomo_b"].header_spacing == pytest.approx(15.6)
    assert vols["tomo_a"].data.dtype == np.uint8
    with pytest.raises(InputError, match="not a tomogram source"):
        read_volume(tmp_path / "readme.txt")

    # the folder of one tomogram is accepted as the input too
    assert list_sources(tmp_path / "tomo_c") == [tmp_path / "tomo_c"]


def test_list_sources_errors(tmp_path):
    with pytest.raises(InputError, match="empty"):
        list_sources(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no tomograms"):
        list_sources(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        list_sources(tmp_path / "missing")
    make_tomo(tmp_path / "tomo_x", n=2)
    np.save(tmp_path / "tomo_x.npy", np.zeros((2, 3, 4), np.uint8))
    np.save(tmp_path / "tomo_y.npy", np.zeros((2, 3, 4), np.uint8))
    # two sources of one tomo_id: that tomogram is left out (the run writes it -1), the others are used
    assert list_sources(tmp_path) == [tmp_path / "tomo_y.npy"]
    found = scan_sources(tmp_path, report=False)
    assert found.duplicates == {"tomo_x": [tmp_path / "tomo_x", tmp_path / "tomo_x.npy"]}
    assert found.ids == ["tomo_x", "tomo_y"] and [p.name for p, _ in found.skipped] == ["notes.txt"]


def test_iter_volumes_skips_bad_tomograms(tmp_path, caplog):
    make_tomo(tmp_path / "tomo_1", n=3)
    bad = tmp_path / "tomo_2"
    make_tomo(bad, n=3)
    (bad / "slice_0001.jpg").unlink()  # a gap
    np.save(tmp_path / "tomo_3.npy", np.zeros((2, 3, 4), np.uint8))
    (tmp_path / "tomo_4.npy").write_bytes(b"garbage")
    errors = []
    with caplog.at_level(logging.ERROR, logger="inference.io"):
        got = list(iter_volumes(list_sources(tmp_path), threads=2,
                                on_error=lambda src, exc: errors.append((src, exc))))
    assert [v.tomo_id for _, v in got] == ["tomo_1", "tomo_3"]
    assert [src.name for src, _ in errors] == ["tomo_2", "tomo_4.npy"]
    assert all(isinstance(exc, InputError) for _, exc in errors)
    assert "tomo_2" in caplog.text and "tomo_4.npy" in caplog.text and "missing" in caplog.text


# --- voxel spacing ------------------------------------------------------------------------


def test_resolve_spacing_order(caplog):
    table = {"tomo_a": 15.6}
    with caplog.at_level(logging.DEBUG, logger="inference.io"):  # per tomogram: DEBUG (-v)
        assert resolve_spacing("tomo_a", table=table, header_spacing=10.0) == (15.6, "csv")
        assert resolve_spacing("tomo_b", table=table, header_spacing=10.0) == (10.0, "header")
        assert resolve_spacing("tomo_b", table=table, header_spacing=None) == (13.1, "default")
        assert resolve_spacing("tomo_b", table=None, header_spacing=None, default=16.8) == (16.8, "default")
    assert "from csv" in caplog.text and "from header" in caplog.text and "from default" in caplog.text
    with pytest.raises(InputError):
        resolve_spacing("tomo_b", table=None, header_spacing=None, default=0)


def test_spacing_table_train_labels_format(tmp_path):
    csv = tmp_path / "train_labels.csv"
    csv.write_text(
        "row_id,tomo_id,Motor axis 0,Motor axis 1,Motor axis 2,Array shape (axis 0),"
        "Array shape (axis 1),Array shape (axis 2),Voxel spacing,Number of motors\n"
        "0,tomo_003acc,-1.0,-1.0,-1.0,500,1912,1847,6.5,0\n"
        "1,tomo_00e047,169.0,546.0,603.0,300,959,928,15.6,1\n"
        "2,tomo_00e463,235.0,403.0,137.0,500,924,956,19.7,8\n"
        "3,tomo_00e463,243.0,363.0,153.0,500,924,956,19.7,8\n"
    )
    assert load_spacing_table(csv) == {"tomo_003acc": 6.5, "tomo_00e047": 15.6, "tomo_00e463": 19.7}


def test_spacing_table_real_labels(real_labels):
    table = load_spacing_table(real_labels)
    assert len(table) == 648 and table["tomo_003acc"] == 6.5


def test_spacing_table_two_columns_and_errors(tmp_path):
    csv = tmp_path / "spacing.csv"
    csv.write_text("tomo_id,voxel_spacing\ntomo_a,13.1\ntomo_b, 16.8\n")
    assert load_spacing_table(csv) == {"tomo_a": 13.1, "tomo_b": 16.8}

    cases = {
        "tomo_id,voxel_spacing\ntomo_a,13.1\ntomo_a,15.6\n": "line 3",  # inconsistent
        "tomo_id,voxel_spacing\ntomo_a,0\n": "line 2",
        "tomo_id,voxel_spacing\ntomo_a,-4\n": "not a positive",
        "tomo_id,voxel_spacing\ntomo_a,nan\n": "not a positive",
        "tomo_id,voxel_spacing\ntomo_a,\n": "line 2",
        "tomo_id,voxel_spacing\ntomo_a,abc\n": "not a number",
        "tomo_id,spacing\ntomo_a,13.1\n": "voxel_spacing",  # missing column
        "tomo_id,voxel_spacing\n": "no rows",
        "": "empty",
    }
    for text, expected in cases.items():
        csv.write_text(text)
        with pytest.raises(InputError) as err:
            load_spacing_table(csv)
        assert str(csv) in str(err.value) and expected in str(err.value), (text, str(err.value))


def test_bad_threads(tmp_path):
    make_tomo(tmp_path / "tomo_t", n=2)
    with pytest.raises(InputError, match="threads"):
        read_slices(tmp_path / "tomo_t", threads=0)


def test_progress_bar(tmp_path):
    pytest.importorskip("tqdm")
    vol = make_tomo(tmp_path / "tomo_p", n=3, fmt="png")
    assert np.array_equal(read_slices(tmp_path / "tomo_p", progress=True, threads=2), vol)


def test_import_is_cheap():
    # no work on import: importing the readers does not import the heavy optional backends
    import subprocess
    import sys

    code = ("import sys, inference.io.readers, inference.io.image_decoders; "
            "print(sorted(m for m in ('cv2', 'simplejpeg', 'PIL.Image', 'mrcfile', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2], env={**os.environ, "PYTHONPATH": "."})
    assert out.stdout.strip() == "[]"


def test_a_map_file_is_read_as_mrc(shared, tmp_path):
    """EMDB's ``.map`` suffix is MRC: the real maps of the shared data are sources and read as they are."""
    from inference.io.sources import scan_sources

    real = shared / "realdata" / "mrcfile" / "EMD-3197.map"
    if not real.is_file():
        pytest.skip(f"{real} not found")
    (tmp_path / "in").mkdir()
    shutil.copy(real, tmp_path / "in" / "EMD-3197.map")
    found = scan_sources(tmp_path / "in")
    assert [p.name for p in found.sources] == ["EMD-3197.map"] and not found.skipped
    vol = read_volume(tmp_path / "in" / "EMD-3197.map")
    assert vol.tomo_id == "EMD-3197" and vol.data.shape == (20, 20, 20) and vol.header_spacing == pytest.approx(11.4)
