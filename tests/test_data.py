"""The one CSV reader (encodings, binary data, huge cells, duplicate columns, empty files)
and the escaping of formula cells in the CSVs the library writes."""

from __future__ import annotations

import codecs
import csv
import logging

import numpy as np
import pytest

from core.batch import read_batch_pairs
from core.data import (
    MAX_CSV_BYTES,
    MAX_FIELD_CHARS,
    escape_cell,
    read_csv,
    read_identities,
    read_labelled_pairs,
    read_pairs,
    unescape_cell,
)
from core.errors import DataError

ACCENTED = "file_x,file_y,same\nJosé Müller/1.jpg,Zoë Ñúñez/2.jpg,1\nJosé Müller/1.jpg,Łukasz.jpg,0\n"
NAMES = [("José Müller/1.jpg", "Zoë Ñúñez/2.jpg", True), ("José Müller/1.jpg", "Łukasz.jpg", False)]

#: name -> (bytes, the encoding read_csv should report)
GOOD = {
    "utf8.csv": (ACCENTED.encode(), "utf-8"),
    "utf8-bom.csv": (codecs.BOM_UTF8 + ACCENTED.encode(), "utf-8"),
    "utf16-le.csv": (codecs.BOM_UTF16_LE + ACCENTED.encode("utf-16-le"), "utf-16-le"),
    "utf16-be.csv": (codecs.BOM_UTF16_BE + ACCENTED.encode("utf-16-be"), "utf-16-be"),
    "utf32-le.csv": (codecs.BOM_UTF32_LE + ACCENTED.encode("utf-32-le"), "utf-32-le"),
    "excel-crlf.csv": (ACCENTED.replace("\n", "\r\n").replace("Łukasz", "Lukasz").encode("cp1252") + b",,\r\n", "cp1252"),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_common_encodings_read_the_same_pairs(tmp_path, name, caplog):
    data, encoding = GOOD[name]
    path = tmp_path / name
    path.write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="core.data"):
        table = read_csv(path, ("file_x", "file_y"))
        pairs = read_pairs(path)
    assert table.encoding == encoding and table.columns == ["file_x", "file_y", "same"]
    want = NAMES if "excel" not in name else [NAMES[0], (NAMES[1][0], "Lukasz.jpg", False)]
    assert [(p.file_x, p.file_y, p.same) for p in pairs] == want
    assert table.lines == [2, 3]  # the blank ",," row at the end is skipped
    if encoding == "cp1252":  # not UTF-8: read, but the user is told which encoding was assumed
        assert "not UTF-8" in caplog.text and "Windows-1252" in caplog.text and "CSV UTF-8" in caplog.text
    else:
        assert not caplog.text
    batch, _ = read_batch_pairs(path)
    assert [(p.file_x, p.file_y, p.same) for p in batch] == want


def test_latin1_names_are_read_with_a_warning(tmp_path, caplog):
    path = tmp_path / "latin1.csv"
    path.write_bytes("file,identity\nAndré/1.jpg,André\nAndré/2.jpg,André\nçà.jpg,Ça\n".encode("latin-1"))
    with caplog.at_level(logging.WARNING, logger="core.data"):
        ids = read_identities(path)
        pairs, kind = read_labelled_pairs(path)
    assert ids == {"André/1.jpg": "André", "André/2.jpg": "André", "çà.jpg": "Ça"} and kind == "identities"
    assert sum(p.same for p in pairs) == 1 and len(pairs) == 3 and "latin1.csv is not UTF-8" in caplog.text


BAD = {
    "binary.csv": (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
        r"binary\.csv is not a text CSV file \(binary data at byte 6\); save it as CSV UTF-8",
    ),
    "utf16-no-bom.csv": (ACCENTED.encode("utf-16-le"), r"not a text CSV file \(binary data at byte 1, perhaps UTF-16"),
    "nul.csv": (b"file_x,file_y\na.jpg,b\x00.jpg\n", r"binary data at byte 21"),
    "huge-cell.csv": (
        b"file_x,file_y,same\nok.jpg," + b"x" * 200_000 + b".jpg,1\n",
        r"line 2, column 2 \(column 'file_y'\): a cell of 200,004 characters, over the limit of 4,096",
    ),
    "huge-quoted.csv": (b'file_x,file_y,same\n"a\n' + b"y" * 200_000 + b'",b.jpg,1\n', r"line 2, column 1 \(column 'file_x'\): a cell of 200,002"),
    "long-extra.csv": (b"file_x,file_y,same\na.jpg,b.jpg,1," + b"z" * 5000 + b"\n", r"line 2, column 4 \(a column without a header\)"),
    "duplicate.csv": (b"file_x,file_y,same,file_y\na.jpg,b.jpg,1,c.jpg\n", r"the column 'file_y' appears twice \(columns 2 and 4\); keep one"),
    "header-only.csv": (b"file_x,file_y,same\n", r"header-only\.csv has a header but no rows"),
    "blank-rows.csv": (b"file_x,file_y,same\n,,\n\n", r"has a header but no rows"),
    "empty.csv": (b"", r"empty\.csv is empty; expected a header line"),
    "spaces.csv": (b"  \r\n\r\n", r"is empty"),
    "open-quote.csv": (b'file_x,file_y,same\n"a.jpg,b.jpg,1\n', r"line 2: not readable as CSV \(unexpected end of data"),
    "bad-utf16.csv": (codecs.BOM_UTF16_LE + b"f\x00i\x00\x00\xd8", r"UTF-16-LE byte order mark but is not valid UTF-16-LE"),
    "no-columns.csv": (b"a,b\n1,2\n", r"missing column\(s\) file_x, file_y"),
    "semicolons.csv": (b"file_x;file_y;same\na.jpg;b.jpg;1\n", r"separated by ';': save it with commas"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_nasty_csvs_give_a_data_error_that_says_what_to_do(tmp_path, name):
    data, message = BAD[name]
    path = tmp_path / name
    path.write_bytes(data)
    for read in (read_pairs, read_labelled_pairs, lambda p: read_batch_pairs(p)):
        with pytest.raises(DataError, match=message if name != "no-columns.csv" else "missing column") as e:
            read(path)
        assert "Traceback" not in str(e.value) and len(str(e.value)) < 400


def test_limits(tmp_path, monkeypatch):
    import core.data as data

    path = tmp_path / "big.csv"
    path.write_bytes(b"file_x,file_y,same\n" + b"a.jpg,b.jpg,1\n" * 100)
    monkeypatch.setattr(data, "MAX_CSV_BYTES", 1000)
    with pytest.raises(DataError, match="over the 0 MiB limit for a CSV file; split it"):
        read_pairs(path)
    monkeypatch.undo()
    assert MAX_CSV_BYTES == 64 * 2**20 and MAX_FIELD_CHARS == 4096 and len(read_pairs(path)) == 100
    ok = tmp_path / "long.csv"
    ok.write_text(f"file_x,file_y,same\n{'d/' * 2000}a.jpg,b.jpg,1\n")  # 4,005 characters: a long but legal path
    assert len(read_pairs(ok)[0].file_x) == 4005
    assert csv.field_size_limit() == 131072  # the reader leaves the process-wide limit as it was
    with pytest.raises(DataError, match="no such file"):
        read_pairs(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="is not a file"):
        read_pairs(tmp_path)


def test_error_messages_use_the_name_given(tmp_path):
    path = tmp_path / "upload" / "pairs.csv"
    path.parent.mkdir()
    path.write_bytes(b"\x00\x01")
    with pytest.raises(DataError) as e:
        read_csv(path, name="pairs.csv")
    assert str(e.value).startswith("pairs.csv is not a text CSV file") and str(tmp_path) not in str(e.value)


@pytest.mark.parametrize("text", ["=cmd|' /C calc'!A0", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "'quoted", "''", '=HYPERLINK("http://x")'])
def test_formula_cells_are_escaped_and_come_back_exactly(text):
    cell = escape_cell(text)
    assert cell == "'" + text and unescape_cell(cell) == text


def test_other_cells_are_unchanged():
    for v in ("a.jpg", "", "x=1", "1-2", None, -0.05, 3, "é"):
        assert escape_cell(v) == v
    assert unescape_cell("a.jpg") == "a.jpg"


def test_faithfulness_csv_escapes_text_cells(tmp_path):
    from core.evaluate.faithfulness import FaithfulnessReport

    rep = FaithfulnessReport(["=HYPERLINK(1)"], np.linspace(0.0, 1.0, 3))
    rows, curves = rep.to_csv(tmp_path / "f.csv")
    raw = rows.read_text()
    assert "'=HYPERLINK(1)" in raw and "\n=HYPERLINK" not in raw
    assert "'=HYPERLINK(1)" in curves.read_text()
