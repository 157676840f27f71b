"""Pairs and identities files.

A pairs CSV has the columns ``file_x,file_y,same`` (``same`` is 1 or 0); an identities CSV
has ``file,identity`` and implies every pair of its files (same identity = genuine).
File names are relative to an images directory.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError


@dataclass(frozen=True)
class LabelledPair:
    file_x: str
    file_y: str
    same: bool


def _read_rows(path: str | Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in required if c not in cols]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected a header with {', '.join(required)}")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def _parse_same(value: str, path: Path, line: int) -> bool:
    v = value.lower()
    if v in ("1", "true", "yes", "same", "1.0"):
        return True
    if v in ("0", "false", "no", "different", "0.0"):
        return False
    raise DataError(f"{path}, line {line}: 'same' must be 1 or 0, got {value!r}")


def read_pairs(path: str | Path) -> list[LabelledPair]:
    """The labelled pairs of a ``file_x,file_y,same`` CSV."""
    rows = _read_rows(path, ("file_x", "file_y", "same"))
    return [LabelledPair(r["file_x"], r["file_y"], _parse_same(r["same"], Path(path), i + 2)) for i, r in enumerate(rows)]


def read_identities(path: str | Path) -> dict[str, str]:
    """``file -> identity`` from a ``file,identity`` CSV."""
    rows = _read_rows(path, ("file", "identity"))
    out: dict[str, str] = {}
    for i, r in enumerate(rows):
        if not r["file"] or not r["identity"]:
            raise DataError(f"{path}, line {i + 2}: empty file or identity")
        if r["file"] in out and out[r["file"]] != r["identity"]:
            raise DataError(f"{path}, line {i + 2}: {r['file']} is listed with two identities")
        out[r["file"]] = r["identity"]
    return out


def pairs_from_identities(identities: dict[str, str]) -> list[LabelledPair]:
    """Every unordered pair of distinct files; genuine when the identities match."""
    files = sorted(identities)
    return [LabelledPair(a, b, identities[a] == identities[b]) for a, b in itertools.combinations(files, 2)]


def read_labelled_pairs(path: str | Path) -> tuple[list[LabelledPair], str]:
    """Pairs from either kind of CSV (told apart by the header) and which kind it was."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = [c.strip() for c in (f.readline().split(","))]
    if "identity" in header:
        return pairs_from_identities(read_identities(path)), "identities"
    return read_pairs(path), "pairs"


def resolve(images: str | Path | None, name: str, csv_path: str | Path) -> Path:
    """An image path: relative to ``images`` if given, else to the CSV's folder."""
    p = Path(name)
    if p.is_absolute():
        return p
    base = Path(images) if images is not None else Path(csv_path).parent
    return base / p
