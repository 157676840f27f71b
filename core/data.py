"""Pairs and identities files, and the one CSV reader and cell escaping of the library.

A pairs CSV has the columns ``file_x,file_y,same`` (``same`` is 1 or 0); an identities CSV
has ``file,identity`` and implies every pair of its files (same identity = genuine).
File names are relative to an images directory.

Every CSV that ``core`` reads goes through ``read_csv``, which takes what spreadsheets and
users really save and refuses the rest with a ``DataError`` that says what to do: a byte
order mark (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE) gives the encoding; otherwise UTF-8 is
tried, then Windows-1252 (and Latin-1) when the bytes look like text, with a warning;
binary data, files over ``MAX_CSV_BYTES``, cells over ``MAX_FIELD_CHARS`` characters,
duplicate column names, and files without a header or without rows are refused. Every CSV
that ``core`` writes escapes its text cells with ``escape_cell`` so that a spreadsheet
does not run a file name such as ``=HYPERLINK(...)`` as a formula; ``unescape_cell``
gives the text back exactly.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError

log = logging.getLogger(__name__)

#: Largest CSV read, in bytes.
MAX_CSV_BYTES = 64 * 1024 * 1024
#: Longest cell of a pairs or identities CSV, in characters (the longest path most systems allow).
MAX_FIELD_CHARS = 4096
#: Longest cell of a CSV of free text (reports, error messages), in characters.
MAX_TEXT_FIELD_CHARS = 131_072
#: Byte order marks and their encodings; UTF-32 first (its little-endian mark starts with UTF-16's).
BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))  # fmt: skip
#: What a text cell may start with for a spreadsheet to read it as a formula (OWASP's list),
#: and the escape itself (so that an escaped cell is never ambiguous).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")

_CONTROL = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"  # control characters other than tab, LF, CR
_CONTROL_BYTES, _CONTROL_CHARS = re.compile(_CONTROL.encode("ascii")), re.compile(_CONTROL)
_CSV_LIMIT_LOCK = threading.Lock()  # csv.field_size_limit is process-wide
SAVE_AS = "save it as CSV UTF-8 (comma delimited)"


@dataclass(frozen=True)
class LabelledPair:
    file_x: str
    file_y: str
    same: bool


@dataclass(frozen=True)
class CsvTable:
    """A parsed CSV: its ``name`` (as error messages call it), the ``columns`` (stripped),
    one dict per non-blank row, the line each row starts on, and the encoding used."""

    name: str
    columns: list[str]
    rows: list[dict[str, str]]
    lines: list[int]
    encoding: str


# -- reading -------------------------------------------------------------------------------------
def decode_csv_bytes(data: bytes, name: str) -> tuple[str, str]:
    """``(text, encoding)`` of a CSV file's bytes, or a ``DataError`` for binary data."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(encoding)
            except UnicodeDecodeError as e:
                raise DataError(f"{name} starts with a {encoding.upper()} byte order mark but is not valid {encoding.upper()} "
                                f"(byte {len(bom) + e.start}); {SAVE_AS}") from None  # fmt: skip
            _check_text(text, name, _byte_offset(bom, encoding, text))
            return text, encoding
    _check_text(data, name, lambda i: i)  # controls are the same bytes in UTF-8 and the 8-bit code pages
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    for encoding, label in (("cp1252", "Windows-1252"), ("latin-1", "Latin-1")):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:  # cp1252 leaves five bytes undefined; Latin-1 none
            continue
        log.warning("%s is not UTF-8; read it as %s (accented names may be wrong: %s)", name, label, SAVE_AS)
        return text, encoding
    raise AssertionError("Latin-1 decodes any bytes")  # pragma: no cover


def _byte_offset(bom: bytes, encoding: str, text: str) -> Callable[[int], int]:
    """Where character ``i`` of ``text`` (decoded after a ``bom``) starts in the file's bytes."""
    return lambda i: len(bom) + len(text[:i].encode(encoding))


def _check_text(data: bytes | str, name: str, byte_at: Callable[[int], int]) -> None:
    m = _CONTROL_BYTES.search(data) if isinstance(data, bytes) else _CONTROL_CHARS.search(data)
    if m is not None:
        hint = ""
        if isinstance(data, bytes) and data[:200].count(0) >= len(data[:200]) // 3:
            hint = ", perhaps UTF-16 or UTF-32 without a byte order mark"
        raise DataError(f"{name} is not a text CSV file (binary data at byte {byte_at(m.start())}{hint}); {SAVE_AS}")


def read_bounded(path: Path, name: str, max_bytes: int, what: str, hint: str) -> bytes:
    """The bytes of a text file of at most ``max_bytes`` (``what`` and ``hint`` word the
    messages: ``"a CSV file"``, ``"split it into smaller files"``); a missing, unreadable or
    larger file is a ``DataError`` naming it as ``name``."""
    if not path.is_file():
        raise DataError(f"{name}: no such file" if not path.exists() else f"{name} is not a file; give {what}")
    size = path.stat().st_size
    limit = f"the {max_bytes // 2**20} MiB limit for {what}"
    if size > max_bytes:
        raise DataError(f"{name} is {size / 2**20:.0f} MiB, over {limit}; {hint}")
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise DataError(f"{name} cannot be read ({e.strerror or type(e).__name__}); check the file's permissions") from None
    if len(data) > max_bytes:  # it grew since the check
        raise DataError(f"{name} is over {limit}; {hint}")
    return data


def read_csv(path: str | Path, required: Sequence[str] = (), name: str | None = None, strip: bool = True,
             max_field: int = MAX_FIELD_CHARS, allow_no_rows: bool = False) -> CsvTable:  # fmt: skip
    """The header and rows of a CSV file (see the module docstring for what is accepted).

    ``required`` columns must be in the header; ``name`` is what messages call the file
    (default: its path; give the name a user knows, e.g. relative to an upload folder);
    ``strip`` strips the cells' surrounding spaces; a cell over ``max_field`` characters is
    refused with its line and column. Cells missing at the end of a row are empty; blank
    rows (no cell with text) are skipped; a header without rows is refused unless
    ``allow_no_rows``. Every failure is a ``DataError``."""
    path = Path(path)
    name = str(path) if name is None else name
    data = read_bounded(path, name, MAX_CSV_BYTES, "a CSV file", "split it into smaller files")
    text, encoding = decode_csv_bytes(data, name)
    records = _parse(text, name)
    while records and not any(c.strip() for c in records[0][1]):  # blank lines before the header
        records.pop(0)
    expect = f"a header line with {', '.join(required)}" if required else "a header line"
    if not records:
        raise DataError(f"{name} is empty; expected {expect} and one row per line")
    header_line, header = records[0]
    columns = [c.strip().lstrip("\ufeff") for c in header]
    seen: dict[str, int] = {}
    for j, c in enumerate(columns):
        _check_cell(c, name, header_line, j, "the header", max_field)
        if c and c in seen:
            raise DataError(f"{name}: the column '{c}' appears twice (columns {seen[c] + 1} and {j + 1}); keep one of them")
        seen.setdefault(c, j)
    missing = [c for c in required if c not in seen]
    if missing:
        raise missing_columns(name, columns, missing, expect)
    rows, lines = [], []
    for line, cells in records[1:]:
        if not any(c.strip() for c in cells):
            continue
        row: dict[str, str] = {}
        for j, c in enumerate(columns):
            value = cells[j] if j < len(cells) else ""
            _check_cell(value, name, line, j, f"column {c!r}" if c else "a column without a name", max_field)
            if c:
                row[c] = value.strip() if strip else value
        for j in range(len(columns), len(cells)):  # cells beyond the header are ignored, but not without bound
            _check_cell(cells[j], name, line, j, "a column without a header", max_field)
        rows.append(row)
        lines.append(line)
    if not rows and not allow_no_rows:
        raise DataError(f"{name} has a header but no rows; add one row per line under {', '.join(c for c in columns if c)}")
    return CsvTable(name, columns, rows, lines, encoding)


def _parse(text: str, name: str) -> list[tuple[int, list[str]]]:
    """``(first line, cells)`` of each record; the field limit is ours (``read_csv``), not csv's."""
    out = []
    with _CSV_LIMIT_LOCK:
        old = csv.field_size_limit()
        csv.field_size_limit(max(old, MAX_CSV_BYTES))
        try:
            reader = csv.reader(io.StringIO(text, newline=""), strict=True)
            last = 0
            try:
                for cells in reader:
                    out.append((last + 1, cells))
                    last = reader.line_num
            except csv.Error as e:
                raise DataError(f"{name}, line {last + 1}: not readable as CSV ({e}: is a quote left open?); {SAVE_AS}") from None
        finally:
            csv.field_size_limit(old)
    return out


def missing_columns(name: str, columns: Sequence[str], missing: Sequence[str], expect: str) -> DataError:
    """The error for a header without the ``missing`` columns (``expect``: what it should have)."""
    sep = next((s for s in (";", "\t", "|") if len(columns) == 1 and s in columns[0]), None)
    hint = f" (its columns seem to be separated by {sep!r}: save it with commas)" if sep else ""
    return DataError(f"{name}: missing column(s) {', '.join(missing)}; expected {expect}{hint}")


def _check_cell(value: str, name: str, line: int, j: int, what: str, max_field: int) -> None:
    if len(value) > max_field:
        raise DataError(f"{name}, line {line}, column {j + 1} ({what}): a cell of {len(value):,} characters, over the limit of "
                        f"{max_field:,} (file names are at most {MAX_FIELD_CHARS:,}); check the file's quotes and delimiters")  # fmt: skip


def _read_rows(path: str | Path, required: tuple[str, ...], name: str | None = None, max_field: int = MAX_FIELD_CHARS) -> list[dict[str, str]]:
    """The rows of ``read_csv`` (stripped), for the readers that need no line numbers."""
    return read_csv(path, required, name, max_field=max_field).rows


# -- writing -------------------------------------------------------------------------------------
def escape_cell(value: object) -> object:
    """A cell for a CSV a spreadsheet may open: text starting with ``= + - @``, a tab, a
    carriage return or ``'`` gets one ``'`` in front (so it is shown, never run as a
    formula, and ``unescape_cell`` undoes it exactly); numbers and other values unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def unescape_cell(text: str) -> str:
    """The text ``escape_cell`` was given: one leading ``'`` removed."""
    return text[1:] if text.startswith("'") else text


# -- pairs and identities ------------------------------------------------------------------------
def _parse_same(value: str, path: str | Path, line: int) -> bool:
    v = value.lower()
    if v in ("1", "true", "yes", "same", "1.0"):
        return True
    if v in ("0", "false", "no", "different", "0.0"):
        return False
    raise DataError(f"{path}, line {line}: 'same' must be 1 or 0, got {value[:100]!r}")


def pairs_from_table(table: CsvTable) -> list[LabelledPair]:
    """The labelled pairs of a ``file_x,file_y,same`` table."""
    out = []
    for r, line in zip(table.rows, table.lines, strict=True):
        if not r["file_x"] or not r["file_y"]:
            raise DataError(f"{table.name}, line {line}: empty file_x or file_y")
        out.append(LabelledPair(r["file_x"], r["file_y"], _parse_same(r["same"], table.name, line)))
    return out


def identities_from_table(table: CsvTable) -> dict[str, str]:
    """``file -> identity`` of a ``file,identity`` table."""
    out: dict[str, str] = {}
    for r, line in zip(table.rows, table.lines, strict=True):
        if not r["file"] or not r["identity"]:
            raise DataError(f"{table.name}, line {line}: empty file or identity")
        if r["file"] in out and out[r["file"]] != r["identity"]:
            raise DataError(f"{table.name}, line {line}: {r['file']} is listed with two identities")
        out[r["file"]] = r["identity"]
    return out


def read_pairs(path: str | Path, name: str | None = None) -> list[LabelledPair]:
    """The labelled pairs of a ``file_x,file_y,same`` CSV."""
    return pairs_from_table(read_csv(path, ("file_x", "file_y", "same"), name))


def read_identities(path: str | Path, name: str | None = None) -> dict[str, str]:
    """``file -> identity`` from a ``file,identity`` CSV."""
    return identities_from_table(read_csv(path, ("file", "identity"), name))


def pairs_from_identities(identities: dict[str, str]) -> list[LabelledPair]:
    """Every unordered pair of distinct files; genuine when the identities match."""
    files = sorted(identities)
    return [LabelledPair(a, b, identities[a] == identities[b]) for a, b in itertools.combinations(files, 2)]


def labelled_pairs_from_table(table: CsvTable) -> tuple[list[LabelledPair], str]:
    """Pairs from either kind of table (told apart by the header) and which kind it was."""
    if "identity" in table.columns:
        _require(table, ("file", "identity"))
        return pairs_from_identities(identities_from_table(table)), "identities"
    _require(table, ("file_x", "file_y", "same"), " (or file, identity)")
    return pairs_from_table(table), "pairs"


def _require(table: CsvTable, columns: Sequence[str], alternative: str = "") -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise missing_columns(table.name, table.columns, missing, f"a header with {', '.join(columns)}{alternative}")


def read_labelled_pairs(path: str | Path, name: str | None = None) -> tuple[list[LabelledPair], str]:
    """Pairs from either kind of CSV (told apart by the header) and which kind it was."""
    return labelled_pairs_from_table(read_csv(path, (), name))


def resolve(images: str | Path | None, name: str, csv_path: str | Path) -> Path:
    """An image path: relative to ``images`` if given, else to the CSV's folder."""
    p = Path(name)
    if p.is_absolute():
        return p
    base = Path(images) if images is not None else Path(csv_path).parent
    return base / p


def confined(base: Path, name: str, root: Path) -> Path | None:
    """The file ``name`` (relative to ``base``) resolved, symlinks followed, if it is a file
    inside ``root`` (already resolved); None otherwise (absolute names included), without
    saying which: for uploads, where nothing outside ``root`` may be probed."""
    if not name or Path(name).is_absolute() or "\x00" in name:
        return None
    try:
        p = (base / name).resolve()
        return p if p.is_relative_to(root) and p.is_file() else None
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a name too long for the system
        return None
