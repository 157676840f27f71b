"""The rows of a batch and the table made of them: ``BatchPair``, ``BatchRow``, ``BatchResult``,
the summary, and filtering, sorting and laying out rows for the CLI and the UI."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

#: The columns of ``pairs.csv`` before the per-method runtimes (``runtime_<method>``).
COLUMNS = ("index", "file_x", "file_y", "label", "similarity", "threshold", "decision", "correct", "c_score", "runtime_s", "error",
           "method_errors")  # fmt: skip
SAME, DIFFERENT = "same", "different"


@dataclass(frozen=True)
class BatchPair:
    """One pair to run; ``same`` is None when the pairs file gives no label, ``fold`` the
    benchmark's set the pair is in (0-based; LFW-format ``pairs.txt``), else None."""

    file_x: str
    file_y: str
    same: bool | None = None
    fold: int | None = None


@dataclass
class BatchRow:
    """One pair's line of the table. ``label`` is the truth (``"same"``/``"different"``, or
    None when unknown), ``decision`` the model's; ``correct`` is None when either is
    missing. ``runtimes`` are seconds per explanation method; ``error`` is set when the pair
    could not be compared (the other fields then stay None) and ``method_errors`` holds the
    methods that failed on a pair that was compared."""

    index: int
    file_x: str
    file_y: str
    label: str | None = None
    similarity: float | None = None
    threshold: float | None = None
    decision: str | None = None
    correct: bool | None = None
    c_score: float | None = None
    runtime_s: float | None = None
    runtimes: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    method_errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (*COLUMNS[:-1], "runtimes", "method_errors")}


@dataclass
class BatchResult:
    """The rows of a batch, what was run, and where it was saved (``out``, or None)."""

    rows: list[BatchRow]
    methods: list[str]
    model: str | None = None
    preset: str | None = None
    source: str | None = None
    out: Path | None = None
    failed_files: dict[str, str] = field(default_factory=dict)
    complete: bool = True  # False for a run (or a saved folder) that stopped before its end

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, index: int) -> BatchRow:
        """The row with this ``index`` (not its position after sorting or filtering)."""
        for r in self.rows:
            if r.index == index:
                return r
        raise DataError(f"no pair {index} in this batch (pairs 0 to {len(self.rows) - 1})")

    def summary(self) -> dict[str, Any]:
        return batch_summary(self.rows, self.methods)


def batch_summary(rows: Sequence[BatchRow], methods: Sequence[str] = ()) -> dict[str, Any]:
    """Counts and means of a set of rows: ``n_pairs``, ``n_compared``, ``n_errors``,
    ``n_labelled`` (compared pairs with a label), ``n_correct``, ``accuracy`` (None without
    labelled pairs), ``n_same`` / ``n_different`` decisions, ``mean_c_score`` (None without
    C-Scores), ``mean_similarity``, the mean runtime of each method and the number of pairs
    on which a method failed."""
    done = [r for r in rows if r.ok]
    labelled = [r for r in done if r.correct is not None]
    cs = [r.c_score for r in done if r.c_score is not None]
    sims = [r.similarity for r in done if r.similarity is not None]
    runtimes = {m: float(np.mean(v)) for m in methods if (v := [r.runtimes[m] for r in done if m in r.runtimes])}
    return {
        "n_pairs": len(rows),
        "n_compared": len(done),
        "n_errors": len(rows) - len(done),
        "n_labelled": len(labelled),
        "n_correct": sum(bool(r.correct) for r in labelled),
        "accuracy": sum(bool(r.correct) for r in labelled) / len(labelled) if labelled else None,
        "n_same": sum(r.decision == SAME for r in done),
        "n_different": sum(r.decision == DIFFERENT for r in done),
        "mean_c_score": float(np.mean(cs)) if cs else None,
        "mean_similarity": float(np.mean(sims)) if sims else None,
        "mean_runtime_s": runtimes,
        "n_method_errors": sum(bool(r.method_errors) for r in done),
    }


# -- the table ----------------------------------------------------------------------------------
def filter_rows(rows: Iterable[BatchRow], decision: str | None = None, correct: bool | None = None, min_cscore: float | None = None,
                text: str | None = None, error: bool | None = None) -> list[BatchRow]:  # fmt: skip
    """The rows that pass every filter given: ``decision`` (``"same"``/``"different"``),
    ``correct`` (True/False; unlabelled and failed rows pass neither), ``min_cscore`` (rows
    without a C-Score do not pass), ``text`` (case-insensitive, in either file name or the
    error) and ``error`` (True: only failed pairs, False: only compared ones)."""
    needle = (text or "").strip().lower()
    out = []
    for r in rows:
        if decision and r.decision != decision:
            continue
        if correct is not None and r.correct is not correct:
            continue
        if min_cscore is not None and (r.c_score is None or r.c_score < min_cscore):
            continue
        if error is not None and r.ok == error:
            continue
        if needle and needle not in " ".join((r.file_x, r.file_y, r.error or "", *r.method_errors.values())).lower():
            continue
        out.append(r)
    return out


#: Table headers and the row attribute each shows (runtimes come after, one per method).
HEADERS = (("#", "index"), ("file_x", "file_x"), ("file_y", "file_y"), ("label", "label"), ("decision", "decision"),
           ("correct", "correct"), ("similarity", "similarity"), ("threshold", "threshold"), ("C-Score", "c_score"),
           ("time (s)", "runtime_s"), ("error", "error"))  # fmt: skip
_HEADER_KEYS = {h.lower(): k for h, k in HEADERS}


def sort_key_names(methods: Sequence[str] = ()) -> list[str]:
    """The keys ``sort_rows`` accepts: the row attributes and each method's name (its runtime)."""
    return [k for _, k in HEADERS] + list(methods)


def sort_rows(rows: Iterable[BatchRow], key: str = "index", descending: bool = False) -> list[BatchRow]:
    """Rows sorted by ``key``: a row attribute (``index``, ``similarity``, ``c_score``,
    ``correct``, ...), a table header (``"C-Score"``, ``"#"``) or a method name (its
    runtime). Missing values (failed pairs, no label) go last either way; ties keep the
    pair order."""
    rows = list(rows)
    k = _HEADER_KEYS.get(key.lower(), key)
    if k.endswith(" (s)"):
        k = k[: -len(" (s)")]
    attr = k if k in BatchRow.__dataclass_fields__ else None

    def value(r: BatchRow) -> Any:
        v = getattr(r, attr) if attr else r.runtimes.get(k)
        return v if not isinstance(v, float) or not math.isnan(v) else None

    present = [r for r in rows if value(r) is not None]
    missing = [r for r in rows if value(r) is None]
    present.sort(key=lambda r: r.index)
    present.sort(key=value, reverse=descending)  # stable: ties stay in pair order
    return present + sorted(missing, key=lambda r: r.index)


def rows_table(rows: Sequence[BatchRow], methods: Sequence[str] | None = None, digits: int = 4) -> tuple[list[str], list[list[Any]]]:
    """``(headers, values)`` for a dataframe: one line per row, numbers rounded to
    ``digits``, ``correct`` as ``"yes"``/``"no"``, missing values as None, then one
    ``<method> (s)`` runtime column per method (default: every method seen in the rows)."""
    if methods is None:
        methods = list(dict.fromkeys(m for r in rows for m in r.runtimes))
    headers = [h for h, _ in HEADERS] + [f"{m} (s)" for m in methods]
    table = []
    for r in rows:
        line: list[Any] = []
        for _, k in HEADERS:
            v = getattr(r, k)
            if k == "correct":
                v = None if v is None else ("yes" if v else "no")
            elif isinstance(v, float):
                v = round(v, digits)
            line.append(v)
        line += [None if (t := r.runtimes.get(m)) is None else round(t, 2) for m in methods]
        table.append(line)
    return headers, table


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary of ``batch_summary`` as aligned lines of text (for the CLI and the UI)."""
    s = summary
    acc = "n/a (no labelled pair)" if s["accuracy"] is None else f"{s['accuracy']:.4f} ({s['n_correct']} of {s['n_labelled']} labelled pairs)"
    cs = "n/a (no calibration)" if s["mean_c_score"] is None else f"{s['mean_c_score']:.4f}"
    lines = [
        f"pairs          {s['n_pairs']} ({s['n_compared']} compared, {s['n_errors']} failed)",
        f"decisions      {s['n_same']} same, {s['n_different']} different",
        f"accuracy       {acc}",
        f"mean C-Score   {cs}",
    ]
    for m, t in s["mean_runtime_s"].items():
        lines.append(f"{m + ' (s)':<14} {t:.2f} mean per pair")
    if s["n_method_errors"]:
        lines.append(f"method errors  on {s['n_method_errors']} pairs")
    return lines
