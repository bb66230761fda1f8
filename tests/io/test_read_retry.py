"""Reading again after a transient failure (inference.io.read_retry), and the readers letting such an error
through instead of their one-line InputError (a truncated file stays an InputError: it is never retried)."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest

from inference.common.errors import InputError
from inference.io import mrc as mrc_module
from inference.io import readers
from inference.io.read_retry import ReadFailed, is_transient, read_with_retries


def _fake(module: str, name: str, base=Exception, **attrs) -> BaseException:
    """An instance of a class named like one of aiohttp's or fsspec's, without importing them."""
    return type(name, (base,), {"__module__": module, **attrs})("boom")


@pytest.mark.parametrize("exc, transient", [
    (OSError(errno.EIO, "Input/output error"), True),
    (OSError(errno.ETIMEDOUT, "Connection timed out"), True),
    (OSError(errno.ESTALE, "Stale file handle"), True),
    (ConnectionResetError(errno.ECONNRESET, "reset by peer"), True),
    (TimeoutError(), True),  # asyncio's and fsspec's timeouts have no errno
    (_fake("aiohttp.client_exceptions", "ClientPayloadError"), True),
    (_fake("aiohttp.client_exceptions", "ClientResponseError", status=503), True),
    (_fake("aiohttp.client_exceptions", "ClientResponseError", status=403), False),
    (_fake("fsspec.exceptions", "FSTimeoutError"), True),
    (_fake("mypackage", "ClientPayloadError"), False),  # the name alone is not enough
    (FileNotFoundError(errno.ENOENT, "No such file"), False),
    (PermissionError(errno.EACCES, "Permission denied"), False),
    (OSError(errno.ENOSPC, "No space left"), False),
    (OSError("image file is truncated"), False),  # Pillow: an OSError without errno
    (InputError("t.mrc", "cannot read MRC file (Input/output error)"), False),
    (ValueError("bad"), False),
])
def test_what_is_transient(exc, transient):
    assert is_transient(exc) is transient


class Flaky:
    """A read that raises ``errors`` one after the other, then returns ``value``."""

    def __init__(self, errors, value="volume"):
        self.errors, self.value, self.calls = list(errors), value, 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.value


def test_a_transient_error_is_read_again_after_a_doubling_backoff(caplog):
    caplog.set_level("DEBUG", logger="inference.io.read_retry")
    waits: list[float] = []
    read = Flaky([OSError(errno.EIO, "Input/output error"), TimeoutError()])
    assert read_with_retries(read, "t.npy", retries=2, backoff_s=0.2, sleep=waits.append) == ("volume", 2)
    assert read.calls == 3 and waits == [0.2, 0.2 * 2]
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == ["t.npy: read failed (OSError: [Errno 5] Input/output error); retry 1 of 2 in 0.20 s",
                    "t.npy: read failed (TimeoutError); retry 2 of 2 in 0.40 s"]
    assert all(r.levelname == "DEBUG" for r in caplog.records)


def test_a_read_that_fails_every_try_is_one_line_naming_the_source_and_the_tries():
    read = Flaky([OSError(errno.EIO, "Input/output error")] * 4)
    with pytest.raises(ReadFailed) as got:
        read_with_retries(read, "/data/t.npy", retries=2, sleep=lambda s: None)
    assert read.calls == 3 and got.value.retries == 2
    assert str(got.value) == ("/data/t.npy: read failed 3 time(s) with an error that can pass by itself, the last: "
                              "OSError: [Errno 5] Input/output error. Fix: check the file system or the network; "
                              "the same command run again reads it again (failed tomograms are tried again)")
    assert isinstance(got.value, InputError) and isinstance(got.value.__cause__, OSError)


@pytest.mark.parametrize("exc", [InputError("t.npy", "not a readable .npy array"), PermissionError(13, "denied"),
                                 ValueError("bad")])
def test_an_error_that_is_not_transient_is_raised_at_once(exc):
    read = Flaky([exc])
    with pytest.raises(type(exc)):
        read_with_retries(read, "t.npy", retries=2, sleep=lambda s: pytest.fail("no wait"))
    assert read.calls == 1


def test_no_retries_reads_once():
    with pytest.raises(ReadFailed) as got:
        read_with_retries(Flaky([OSError(errno.EIO, "x")]), "t.npy", retries=0, sleep=lambda s: None)
    assert got.value.retries == 0
    with pytest.raises(ValueError):
        read_with_retries(Flaky([]), "t.npy", retries=-1)


# ---------------------------------------------------------------- the readers let a transient error through


def _failing(err: int):
    def fail(*args, **kwargs):
        raise OSError(err, "chaos", "some file")
    return fail


@pytest.mark.parametrize("err, transient", [(errno.EIO, True), (errno.EACCES, False)])
def test_a_slice_read_error(tmp_path, monkeypatch, err, transient):
    Image = pytest.importorskip("PIL.Image")
    folder = tmp_path / "tomo_a"
    folder.mkdir()
    for z in range(3):
        Image.fromarray(np.full((8, 8), 100 + z, np.uint8)).save(folder / f"slice_{z:04d}.png")
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: _failing(err)() if p.name == "slice_0001.png" else real(p))
    if transient:
        with pytest.raises(OSError) as got:
            readers.read_volume(folder, decoder="pil", threads=2)
        assert got.value.errno == errno.EIO and not isinstance(got.value, InputError)
    else:
        with pytest.raises(InputError, match=r"slice_0001\.png: cannot read slice file \(chaos\)"):
            readers.read_volume(folder, decoder="pil", threads=2)


@pytest.mark.parametrize("err, transient", [(errno.ETIMEDOUT, True), (errno.EACCES, False)])
def test_an_npy_read_error(tmp_path, monkeypatch, err, transient):
    np.save(tmp_path / "t.npy", np.zeros((2, 3, 4), np.uint8))
    monkeypatch.setattr(readers.np, "load", _failing(err))
    with pytest.raises(OSError if transient else InputError) as got:
        readers.read_npy(tmp_path / "t.npy")
    assert isinstance(got.value, InputError) is not transient


@pytest.mark.parametrize("err, transient", [(errno.EIO, True), (errno.EACCES, False)])
def test_an_mrc_read_error(tmp_path, monkeypatch, err, transient):
    mrcfile = pytest.importorskip("mrcfile")
    with mrcfile.new(tmp_path / "t.mrc") as m:
        m.set_data(np.zeros((2, 3, 4), np.uint8))
    monkeypatch.setattr(mrc_module, "open", _failing(err), raising=False)  # the header read
    with pytest.raises(OSError if transient else InputError) as got:
        readers.read_volume(tmp_path / "t.mrc")
    assert isinstance(got.value, InputError) is not transient


@pytest.mark.parametrize("err, transient", [(errno.ECONNRESET, True), (errno.EACCES, False)])
def test_an_omezarr_chunk_read_error(tmp_path, monkeypatch, err, transient):
    pytest.importorskip("zarr", minversion="3", reason="the OME-Zarr reader needs zarr >= 3 (Python >= 3.11)")
    from inference.io.omezarr import read_omezarr
    from inference.synth.omezarr_write import write_omezarr

    write_omezarr(tmp_path / "t.zarr", np.zeros((8, 8, 8), np.uint8), 10.0, levels=1, chunks=(4, 4, 4))
    real = Path.read_bytes
    chunks = tmp_path / "t.zarr" / "0"

    def read_bytes(p):
        if chunks in p.parents and not p.name.startswith(".") and p.name != "zarr.json":  # a chunk, not metadata
            _failing(err)()
        return real(p)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises((OSError, InputError)) as got:
        read_omezarr(tmp_path / "t.zarr")
    assert isinstance(got.value, InputError) is not transient
    if not transient:
        assert "cannot read level 0" in str(got.value)
