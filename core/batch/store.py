"""The saved folder of a batch: ``pairs.csv`` (``write_rows``/``read_rows``), ``batch.json`` and
``pairs/<index>.json``; the writer of a running batch (``_Store``), reading a saved batch or
pair back, and what a resume keeps."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..data import MAX_TEXT_FIELD_CHARS, escape_cell, read_csv, unescape_cell
from ..errors import DataError
from ..explainers.knobs import canonical_knobs
from ..types import AlignedFace, PairResult, jsonable
from .rows import COLUMNS, DIFFERENT, SAME, BatchPair, BatchResult, BatchRow

log = logging.getLogger(__name__)


# -- the saved folder -------------------------------------------------------------------------
def pair_path(out: str | Path, index: int) -> Path:
    return Path(out) / "pairs" / f"{int(index)}.json"


#: The text columns of ``pairs.csv``: escaped against spreadsheet formulas (``core.data.escape_cell``).
TEXT_COLUMNS = ("file_x", "file_y", "label", "decision", "error", "method_errors")


def _header(methods: Sequence[str]) -> list[str]:
    return [*COLUMNS, *(f"runtime_{m}" for m in methods)]


def _cells(r: BatchRow, methods: Sequence[str]) -> list[Any]:
    cells = [r.index, escape_cell(r.file_x), escape_cell(r.file_y), escape_cell(r.label), _num(r.similarity), _num(r.threshold),
             escape_cell(r.decision), None if r.correct is None else int(r.correct), _num(r.c_score), _num(r.runtime_s),
             escape_cell(r.error), escape_cell(json.dumps(r.method_errors)) if r.method_errors else None]  # fmt: skip
    return ["" if c is None else c for c in cells] + [_num(r.runtimes.get(m)) or "" for m in methods]


def write_rows(path: str | Path, rows: Sequence[BatchRow], methods: Sequence[str]) -> Path:
    """The rows as CSV: ``COLUMNS`` then ``runtime_<method>`` per method; empty cells for
    None, ``method_errors`` as a JSON object. Text cells that a spreadsheet would take for
    a formula (``=``, ``+``, ``-``, ``@``, tab, CR) get a ``'`` in front, as do cells that
    start with ``'``; ``read_rows`` takes it off again. The file is replaced at once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(_header(methods))
        w.writerows(_cells(r, methods) for r in rows)
    tmp.replace(path)
    return path


def _num(v: float | None) -> str | None:
    return None if v is None else repr(float(v))  # repr round-trips a float exactly


def read_rows(path: str | Path) -> tuple[list[BatchRow], list[str]]:
    """The rows and method names of a ``pairs.csv`` written by ``write_rows`` (text cells
    unescaped: exactly the rows written)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; run a batch with an output folder first")
    table = read_csv(path, ("index", "file_x", "file_y"), strip=False, max_field=MAX_TEXT_FIELD_CHARS, allow_no_rows=True)
    methods = [c.removeprefix("runtime_") for c in table.columns if c.startswith("runtime_") and c != "runtime_s"]
    rows = []
    for raw, line in zip(table.rows, table.lines, strict=True):
        d = {k: unescape_cell(v) if k in TEXT_COLUMNS else v.strip() for k, v in raw.items()}

        def num(key: str, d: dict[str, str] = d) -> float | None:
            return float(d[key]) if d.get(key) else None

        try:
            rows.append(BatchRow(
                index=int(d["index"]), file_x=d["file_x"], file_y=d["file_y"], label=d.get("label") or None,
                similarity=num("similarity"), threshold=num("threshold"), decision=d.get("decision") or None,
                correct=None if not d.get("correct") else d["correct"] == "1", c_score=num("c_score"), runtime_s=num("runtime_s"),
                runtimes={m: v for m in methods if (v := num(f"runtime_{m}")) is not None}, error=d.get("error") or None,
                method_errors=json.loads(d["method_errors"]) if d.get("method_errors") else {},
            ))  # fmt: skip
        except ValueError as e:  # json.JSONDecodeError included
            raise DataError(f"{path}, line {line}: not a row of a saved batch ({e}); run the batch again") from None
    return rows, methods


def load_batch(out: str | Path) -> BatchResult:
    """A batch saved by ``run_batch(..., out=out)``, rows and all (by index), without
    recomputing; ``complete`` is False for a batch that stopped before its end."""
    out = Path(out)
    rows, methods = read_rows(out / "pairs.csv")
    meta: dict[str, Any] = {}
    if (out / "batch.json").is_file():
        try:
            meta = json.loads((out / "batch.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable %s: %s", out / "batch.json", e)
    rows.sort(key=lambda r: r.index)
    res = BatchResult(rows, list(meta.get("methods", methods)), meta.get("model"), meta.get("preset"), meta.get("source"), out)
    res.complete = bool(meta.get("complete", True))
    return res


def load_pair_json(out: str | Path, index: int) -> dict[str, Any]:
    """The saved JSON of pair ``index`` (a ``core.report.report_json`` dict plus
    ``batch_row`` and ``faces``); for a pair with the same files as an earlier one, that
    one's with this pair's ``batch_row``."""
    data = _read_pair_json(out, index)
    first = data.get("result_of")
    if first is not None:
        target = _read_pair_json(out, int(first))
        if "result_of" in target:
            raise DataError(f"{pair_path(out, index)}: points to pair {first}, which is not a full result; run the batch again")
        data = {**target, "batch_row": data.get("batch_row")}
    return data


def _read_pair_json(out: str | Path, index: int) -> dict[str, Any]:
    path = pair_path(out, index)
    if not path.is_file():
        raise DataError(f"{path}: no saved result for pair {index} (it failed, or the batch was run without an output folder)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise DataError(f"{path}: not a readable pair result ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a readable pair result (not a JSON object)")
    return data


# -- writing --------------------------------------------------------------------------------
def _face_record(f: AlignedFace) -> dict[str, Any]:
    return {"landmarks": np.asarray(f.landmarks, float).tolist(), "box": np.asarray(f.box, float).tolist(),
            "transform": np.asarray(f.transform, float).tolist()}  # fmt: skip


def _write_json(path: Path, data: Any, indent: int | None = None) -> None:
    """``data`` as JSON, replacing ``path`` at once (never a half-written file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, allow_nan=False, indent=indent), encoding="utf-8")
    tmp.replace(path)


class _Store:
    """The output folder of a running batch: ``batch.json`` (``"complete": false`` until the
    end), ``pairs.csv`` written and flushed row by row, and the pairs' JSON."""

    def __init__(self, out_dir: Path, methods: Sequence[str], meta: dict[str, Any], kept: Sequence[BatchRow]) -> None:
        self.out, self.methods = out_dir, list(methods)
        (out_dir / "pairs").mkdir(parents=True, exist_ok=True)
        keep = {r.index for r in kept if r.ok}
        for old in [out_dir / "pairs.csv", out_dir / "batch.json", *(out_dir / "pairs").glob("*.json")]:  # no stale pair to reopen
            if old.is_file() and (old.parent == out_dir or (old.stem.isdigit() and int(old.stem) not in keep)):
                old.unlink()
        self.meta = {**meta, "created": datetime.now(UTC).isoformat(timespec="seconds"), "complete": False, "n_kept": len(kept)}
        _write_json(out_dir / "batch.json", jsonable(self.meta), indent=1)
        write_rows(out_dir / "pairs.csv", kept, self.methods)  # the header (and a resume's kept rows) at once
        self.file = open(out_dir / "pairs.csv", "a", newline="", encoding="utf-8")  # noqa: SIM115 (open for the whole run)
        self.writer = csv.writer(self.file)
        self.written = [r.index for r in kept]

    def pair(self, row: BatchRow, res: PairResult) -> None:
        _write_pair(self.out, row, res)

    def copy(self, row: BatchRow, first: int) -> None:
        """The JSON of a pair with the same files as pair ``first``: its row and a pointer."""
        _write_json(pair_path(self.out, row.index), {"batch_row": jsonable(row.to_dict()), "result_of": int(first)})

    def row(self, row: BatchRow) -> None:
        self.writer.writerow(_cells(row, self.methods))
        self.file.flush()
        self.written.append(row.index)

    def close(self, rows: Sequence[BatchRow] | None, summary: dict[str, Any] | None) -> None:
        self.file.close()
        if rows is None:  # stopped: the rows so far stay, batch.json says it is not complete
            return
        if self.written != sorted(self.written):  # a resume wrote the kept rows first
            write_rows(self.out / "pairs.csv", sorted(rows, key=lambda r: r.index), self.methods)
        _write_json(self.out / "batch.json", jsonable({**self.meta, "complete": True, "summary": summary}), indent=1)


def _write_pair(out_dir: Path, row: BatchRow, res: PairResult) -> Path:
    from ..report import report_json

    data = report_json(res)
    data["batch_row"] = jsonable(row.to_dict())
    data["faces"] = [_face_record(f) for f in res.pair]
    path = pair_path(out_dir, row.index)
    _write_json(path, data)
    return path


# -- resuming -------------------------------------------------------------------------------
def _resumable(out_dir: Path, settings: dict[str, Any], pairs: Sequence[BatchPair]) -> dict[int, BatchRow]:
    """The rows of an earlier run into ``out_dir`` that a resume keeps, by index: failed
    rows, and rows whose JSON is there (a copy's only if its first pair is kept too)."""
    meta_path, csv_path = out_dir / "batch.json", out_dir / "pairs.csv"
    if not meta_path.is_file() or not csv_path.is_file():
        log.info("nothing to resume in %s; running every pair", out_dir)
        return {}
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{meta_path} is not readable ({e}); run again without resume to start over") from None
    then = dict(meta) if isinstance(meta, dict) else {}
    if isinstance(then.get("knobs"), dict):  # written before the hiding value had one name
        then["knobs"] = jsonable(canonical_knobs(then["knobs"]))
    if then.get("images") is not None and settings["images"] is not None:  # the same folder, however it was written
        same = Path(then["images"]).resolve() == Path(settings["images"]).resolve()
        then["images"] = settings["images"] if same else then["images"]
    changed = [k for k in settings if then.get(k) != settings[k]]
    if changed:
        what = {"pairs_sha256": "the pairs (another file, --per-label or --limit)", "n_pairs": "the number of pairs"}
        diffs = "; ".join(what.get(k, f"{k} {_short(then.get(k))} then, {_short(settings[k])} now") for k in changed)
        raise DataError(f"cannot resume the batch in {out_dir}: it was run with other settings ({diffs}); "
                        "run it with the same settings, or without resume to replace it, or into another folder")  # fmt: skip
    rows, _ = read_rows(csv_path)
    if not csv_path.read_bytes().endswith(b"\n") and rows:
        rows.pop()  # the last row was cut off by the interrupt
    first: dict[tuple[str, str], int] = {}
    for i, p in enumerate(pairs):
        first.setdefault((p.file_x, p.file_y), i)
    by_index = {r.index: r for r in rows if 0 <= r.index < len(pairs)}
    kept: dict[int, BatchRow] = {}
    for i in sorted(by_index):
        r, p = by_index[i], pairs[i]
        if (r.file_x, r.file_y, r.label) != (p.file_x, p.file_y, None if p.same is None else (SAME if p.same else DIFFERENT)):
            continue
        j = first[(p.file_x, p.file_y)]
        if not r.ok or (pair_path(out_dir, i).is_file() and (j == i or (j in kept and kept[j].ok))):
            kept[i] = r
    return kept


def _short(v: Any) -> str:
    text = json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."
