"""read_json: each way a small JSON file can fail is one InputError naming the file and a fix."""

import pytest

from inference.common.errors import InputError
from inference.io.copick_config import read_config
from inference.io.copick_picks import read_picks
from inference.io.json_file import read_json


def _error(path, what="picks file"):
    with pytest.raises(InputError) as info:
        read_json(path, what, "write it as JSON")
    return str(info.value)


def test_reads_a_document(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"points": [1, 2]}', encoding="utf-8")
    assert read_json(path, "picks file", "fix") == {"points": [1, 2]}


@pytest.mark.parametrize("content, expected", [
    (None, "picks file not found"),
    (b"\xff\xfe\x00", "not a text (UTF-8) JSON file"),
    (b'{"points": [1, 2', "not valid JSON (Expecting"),
])
def test_failures_are_one_line(tmp_path, content, expected):
    path = tmp_path / "p.json"
    if content is not None:
        path.write_bytes(content)
    message = _error(path)
    assert expected in message and str(path) in message and "\n" not in message


def test_a_folder_is_named(tmp_path):
    message = _error(tmp_path, what="copick config")
    assert "is a folder, not a copick config" in message and "\n" not in message


def test_line_and_column_of_bad_json(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{\n  "a": 1,\n  oops\n}', encoding="utf-8")
    assert "at line 3 column 3" in _error(path)


def test_copick_readers_use_it(tmp_path):
    missing = tmp_path / "none.json"
    with pytest.raises(InputError, match="copick config not found"):
        read_config(missing)
    with pytest.raises(InputError, match="picks file not found"):
        read_picks(missing)
    with pytest.raises(InputError, match="is a folder, not a picks file"):
        read_picks(tmp_path)
