"""Handlers of the app's Explore tab: a pairs CSV (or a folder of identity sub-folders) run
through the batch path (``core.batch``) with progress, then a table of pairs to sort and
filter, a page of ``PAGE_SIZE`` lines at a time, and the maps of the pair a user clicks.
The "explorer" and "viewer" of the X-Map web platform, for a user's own data.

Pure functions, no ``gr.Blocks``: the UI wires them. Every number is computed in
``core``; errors come back as messages, never as raises. A run's results live in its
output folder, so the viewer reopens any row without recomputing it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from apps.handlers import work_dir
from apps.uploads import bundle_source, make_bundle, upload_paths
from core import XFVError
from core.batch import (
    DIFFERENT,
    SAME,
    BatchRow,
    filter_rows,
    load_batch,
    pair_view,
    rows_table,
    run_batch,
    sort_key_names,
    sort_rows,
)
from core.batch.parquet import is_store
from core.batch.view import PairView

log = logging.getLogger(__name__)

#: Choices of the table's filters: label shown -> value passed to ``core.batch.filter_rows``.
DECISION_CHOICES = {"any": None, "same person": SAME, "different people": DIFFERENT}
CORRECT_CHOICES = {"any": None, "correct": True, "wrong": False}
#: Lines of the table on one page: a batch of thousands of pairs is shown a page at a time.
PAGE_SIZE = 50


def _path(source: Any) -> str | None:
    """A path from a text box, an uploaded file (Gradio gives a path or an object with
    ``.name``), or None."""
    if source is None:
        return None
    if isinstance(source, (str, Path)):
        return str(source).strip() or None
    name = getattr(source, "name", None)
    return str(name) if name else None


def summary_markdown(summary: dict[str, Any], out: str | Path | None = None) -> str:
    """The batch summary as Markdown (numbers from ``core.batch.batch_summary``)."""
    s = summary
    none = "n/a (no pair could be compared)" if not s["n_compared"] else None  # not "no label" or "no calibration": untrue then
    acc = none or (
        "n/a (no labelled pair)" if s["accuracy"] is None else f"**{s['accuracy']:.1%}** ({s['n_correct']} of {s['n_labelled']} labelled pairs)"
    )
    cs = none or ("n/a (no calibration)" if s["mean_c_score"] is None else f"{s['mean_c_score']:.3f}")
    lines = [
        f"- **{s['n_pairs']}** pairs: {s['n_compared']} compared, {s['n_errors']} failed (see the *error* column)",
        f"- decisions: {s['n_same']} same person, {s['n_different']} different people",
        f"- accuracy: {acc}",
        f"- mean C-Score: {cs}",
    ]
    if s["mean_runtime_s"]:
        lines.append("- mean time per pair: " + ", ".join(f"{m} {t:.1f} s" for m, t in s["mean_runtime_s"].items()))
    if s["n_method_errors"]:
        lines.append(f"- a method failed on {s['n_method_errors']} pairs")
    if out is not None:
        lines.append(f"- saved in `{out}`")
    return "\n".join(lines)


def _table(rows: list[BatchRow], methods: list[str]) -> dict[str, Any]:
    headers, values = rows_table(rows, methods)
    return {"headers": headers, "values": values, "indices": [r.index for r in rows]}


def page_bounds(n: int, page: Any = 0, page_size: int = PAGE_SIZE) -> tuple[int, int, int, int]:
    """``(page, pages, start, stop)`` for page ``page`` (0-based) of ``n`` lines cut in
    pages of ``page_size``: ``pages`` is at least 1, a page past either end (or no number)
    is clamped to the last or first one, and its lines are ``start`` to ``stop - 1``."""
    size = max(1, int(page_size))
    pages = max(1, -(-int(n) // size))
    try:
        wanted = int(page)
    except (TypeError, ValueError, OverflowError):  # None, NaN, an empty box: the first page
        wanted = 0
    page = min(max(wanted, 0), pages - 1)
    start = page * size
    return page, pages, start, min(int(n), start + size)


def page_message(n_shown: int, n_total: int, page: int = 0, page_size: int = PAGE_SIZE) -> str:
    """What the table shows: ``"3 of 3 pairs shown."`` when it fits on one page, else
    ``"rows 51-100 of 2,345 shown (page 2 of 47); 2,345 of 3,000 pairs after the filters"``."""
    page, pages, start, stop = page_bounds(n_shown, page, page_size)
    if pages == 1:
        return f"{n_shown:,} of {n_total:,} pairs shown."
    return f"rows {start + 1:,}-{stop:,} of {n_shown:,} shown (page {page + 1:,} of {pages:,}); {n_shown:,} of {n_total:,} pairs after the filters"


def _paged(shown: list[BatchRow], methods: list[str], page: Any, page_size: int, n_total: int) -> dict[str, Any]:
    """One page of ``shown``: ``table`` (that page's lines), ``rows`` (all of ``shown``),
    ``page`` (0-based, clamped), ``pages`` and ``page_message``."""
    page, pages, start, stop = page_bounds(len(shown), page, page_size)
    return {"table": _table(shown[start:stop], methods), "rows": shown, "page": page, "pages": pages,
            "page_message": page_message(len(shown), n_total, page, page_size)}  # fmt: skip


def run_explore(runner: Any, source: Any, methods: list[str] | None = None, preset: str = "fast", per_label: int | float | None = None,
                out_dir: str | Path | None = None, progress: Any = None, images: Any = None,
                root: str | Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Run a pairs CSV, identities CSV or folder of identity sub-folders through
    ``core.batch.run_batch`` and give what the tab shows: ``ok``, ``message``, ``summary``
    (Markdown), ``table`` (the first page of ``PAGE_SIZE`` lines: ``headers``, ``values``,
    ``indices``: the pair index of each line), ``rows`` (the whole ``BatchRow`` list, to keep
    as state for filtering and paging), ``page`` (0), ``pages``, ``page_message`` (as in
    ``explore_table``), ``methods`` and ``out`` (the folder ``explore_view`` reads). CSV
    file names are relative to ``images`` when given, else to the CSV's folder; with
    ``root`` (an upload bundle) every file must lie inside it (``core.batch.run_batch``).
    ``out_dir`` defaults to a new folder under the process's temporary folder (removed at
    exit); ``per_label`` of 0 or None means every pair."""
    src = _path(source)
    if not src:
        return {"ok": False, "message": "Upload a pairs CSV (file_x,file_y[,same]) with its photos, or a .zip of them."}
    out = Path(out_dir) if out_dir else work_dir("explore")
    n = int(per_label) if per_label else None
    try:
        res = run_batch(runner, src, _path(images), list(methods or ()), out=out, preset=preset, per_label=n, progress=progress,
                        root=root)  # fmt: skip
    except XFVError as e:
        return {"ok": False, "message": f"Could not run this batch: {_hide(e, root)}"}
    except OSError as e:
        return {"ok": False, "message": f"Could not read or write the files: {_hide(e, root)}"}
    summary = res.summary()
    msg = f"Ran {summary['n_pairs']} pairs" + (f"; {summary['n_errors']} could not be compared." if summary["n_errors"] else ".")
    return {"ok": True, "message": msg, "summary": summary_markdown(summary, None if root else out), "summary_data": summary,
            **_paged(res.rows, res.methods, 0, PAGE_SIZE, len(res.rows)), "methods": res.methods, "out": str(out)}  # fmt: skip


def _hide(error: Exception, root: str | Path | None) -> str:
    """An error's words without the server folder an upload was unpacked into."""
    text = str(error)
    return text if root is None else text.replace(f"{Path(root)}/", "").replace(str(Path(root)), "your upload")


def run_explore_uploads(runner: Any, uploads: Any, methods: list[str] | None = None, preset: str = "fast",
                        per_label: int | float | None = None, out_dir: str | Path | None = None,
                        progress: Any = None) -> dict[str, Any]:  # fmt: skip
    """``run_explore`` on what a user uploaded (``apps.uploads``): a pairs or identities CSV
    with its photos, or a ``.zip`` of them (folders kept), unpacked into a fresh folder that
    is the batch's root, so the CSV can name nothing else; the folder is removed after the
    run (the saved results do not need it)."""
    paths = upload_paths(uploads)
    if not paths:
        return run_explore(runner, None)
    bundle = work_dir("upload")
    try:
        try:
            source = bundle_source(make_bundle(paths, bundle))
        except XFVError as e:
            return {"ok": False, "message": f"Could not use this upload: {_hide(e, bundle)}"}
        return run_explore(runner, source, methods, preset, per_label, out_dir, progress, root=bundle)
    finally:
        shutil.rmtree(bundle, ignore_errors=True)


def open_explore(out_dir: Any) -> dict[str, Any]:
    """A batch saved earlier (its folder), or a results store (``apps.explore_store``), as
    ``run_explore`` gives it, without recomputing."""
    out = _path(out_dir)
    if not out:
        return {"ok": False, "message": "Give the folder of a saved batch."}
    if is_store(out):
        from apps.explore_store import open_store

        return open_store(out)
    try:
        res = load_batch(out)
    except XFVError as e:
        return {"ok": False, "message": f"Could not open this batch: {e}"}
    summary = res.summary()
    return {"ok": True, "message": f"Opened {summary['n_pairs']} pairs.", "summary": summary_markdown(summary, out), "summary_data": summary,
            **_paged(res.rows, res.methods, 0, PAGE_SIZE, len(res.rows)), "methods": res.methods, "out": str(out)}  # fmt: skip


def explore_table(rows: list[BatchRow] | None, methods: list[str] | None = None, decision: str | None = "any", correct: str | None = "any",
                  min_cscore: float | None = None, text: str | None = None, sort_by: str = "index", descending: bool = False,
                  page: int = 0, page_size: int = PAGE_SIZE) -> dict[str, Any]:  # fmt: skip
    """One page of the table after the filters and the sort: ``decision`` and ``correct``
    take the labels of ``DECISION_CHOICES`` / ``CORRECT_CHOICES`` (or their values),
    ``min_cscore`` a number (0 or None: no filter), ``text`` a piece of a file name;
    ``sort_by`` a row key, a header or a method name; ``page`` is 0-based (one past either
    end is clamped to the first or last page) of ``page_size`` lines. Gives ``table`` (as in
    ``run_explore``: that page's lines only), ``rows`` (every line after the filters, in
    order: what ``selected_index`` reads), ``page`` (the page shown, 0-based), ``pages``
    (at least 1) and ``message`` (which lines are shown, as ``page_message``)."""
    rows = list(rows or [])
    methods = list(methods) if methods is not None else list(dict.fromkeys(m for r in rows for m in r.runtimes))
    dec = DECISION_CHOICES.get(decision, decision) if isinstance(decision, str) else decision
    cor = CORRECT_CHOICES.get(correct, correct) if isinstance(correct, str) else correct
    if isinstance(cor, str):
        return {**_paged(rows, methods, 0, page_size, len(rows)), "ok": False,
                "message": f"unknown correctness filter {correct!r}; choose one of: {', '.join(CORRECT_CHOICES)}"}  # fmt: skip
    if sort_by not in sort_key_names(methods) and sort_by.lower() not in {h.lower() for h in rows_table([], methods)[0]}:
        return {**_paged(rows, methods, 0, page_size, len(rows)), "ok": False,
                "message": f"cannot sort by {sort_by!r}; choose one of: {', '.join(sort_key_names(methods))}"}  # fmt: skip
    shown = sort_rows(filter_rows(rows, dec, cor, float(min_cscore) if min_cscore else None, text), sort_by, bool(descending))
    out = _paged(shown, methods, page, page_size, len(rows))
    return {"ok": True, "message": out["page_message"], **out}


def selected_index(shown: list[BatchRow] | None, position: Any, page: int = 0, page_size: int = PAGE_SIZE) -> int | None:
    """The pair index of the line a user clicked: ``position`` is the line number in the
    page shown (or Gradio's ``SelectData.index``, ``[line, column]``), ``shown`` every line
    after the filters (``explore_table``'s ``rows``) and ``page`` the page shown (0-based,
    clamped as ``explore_table`` clamps it). With the default page 0, ``shown`` may also be
    the page's own rows. None for a line that is not on that page."""
    if isinstance(position, (list, tuple)):
        position = position[0] if position else None
    if position is None or not shown:
        return None
    try:
        line = int(position)
    except (ValueError, TypeError, OverflowError):
        return None
    _, _, start, stop = page_bounds(len(shown), page, page_size)
    if line < 0 or start + line >= stop:
        return None
    return shown[start + line].index


def explore_view(out_dir: Any, index: Any) -> dict[str, Any]:
    """The viewer of one pair of a saved batch: ``verdict`` (Markdown), ``crop_a`` /
    ``crop_b`` (the aligned faces), ``gallery`` (one ``(image, caption)`` per method with
    maps: both faces' maps side by side), ``panels`` (per method: ``method``, ``label``,
    ``caption``, ``image``, ``text``, ``error``) and ``words`` (Markdown of each method's
    sentences or error)."""
    out = _path(out_dir)
    if not out:
        return {"ok": False, "message": "Run a batch first."}
    try:
        i = int(index)
    except (TypeError, ValueError):
        return {"ok": False, "message": "Click a row of the table to see its maps."}
    if is_store(out):  # a results store: the row and maps read with DuckDB (apps.explore_store)
        from apps.explore_store import store_pair_view, store_row

        row_of, view_of = store_row, store_pair_view
    else:
        row_of, view_of = _saved_row, _saved_view
    try:
        row = row_of(out, i)
    except XFVError as e:
        return {"ok": False, "message": f"Could not open pair {i}: {e}"}
    title = f"Pair {i}: {row.file_x} vs {row.file_y}"
    if not row.ok:
        return {"ok": False, "message": f"{title} could not be compared: {row.error}", "title": title}
    try:
        view = view_of(out, i, row)
    except XFVError as e:
        return {"ok": False, "message": f"Could not open pair {i}: {e}", "title": title}
    return _view_dict(title, row, view)


def _saved_row(out: str, index: int) -> BatchRow:
    return load_batch(out).row(index)


def _saved_view(out: str, index: int, row: BatchRow) -> PairView:
    return pair_view(out, index)


def _view_dict(title: str, row: BatchRow, view: PairView) -> dict[str, Any]:
    """What ``explore_view`` gives for a pair's ``PairView`` (a saved batch's or a store's)."""
    truth = ""
    if row.label is not None:
        truth = f" The pair is labelled **{'same person' if row.label == SAME else 'different people'}**: the decision is " + (
            "**right**." if row.correct else "**wrong**."
        )
    panels = [{"method": m.method, "label": m.label, "caption": m.caption, "image": m.image, "text": m.text, "error": m.error}
              for m in view.methods]  # fmt: skip
    words = [f"**{p['label']}**: failed: {p['error']}" if p["error"] else f"**{p['caption']}**" + "".join(f"\n- {t}" for t in p["text"])
             for p in panels]  # fmt: skip
    return {
        "ok": True,
        "title": title,
        "message": f"**{view.verdict}**{truth}" + "".join(f"\n\n_Note: {n}_" for n in view.result.notes),
        "verdict": view.verdict,
        "crop_a": view.faces[0],
        "crop_b": view.faces[1],
        "gallery": [(p["image"], p["caption"]) for p in panels if p["image"] is not None],
        "panels": panels,
        "words": "\n\n".join(words),
        "row": row,
        "result": view.result,
    }
