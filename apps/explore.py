"""Handlers of the app's Explore tab: a pairs CSV (or a folder of identity sub-folders) run
through the batch path (``core.batch``) with progress, then a table of pairs to sort and
filter, and the maps of the pair a user clicks. The "explorer" and "viewer" of the X-Map
web platform, for a user's own data.

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

log = logging.getLogger(__name__)

#: Choices of the table's filters: label shown -> value passed to ``core.batch.filter_rows``.
DECISION_CHOICES = {"any": None, "same person": SAME, "different people": DIFFERENT}
CORRECT_CHOICES = {"any": None, "correct": True, "wrong": False}


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


def run_explore(runner: Any, source: Any, methods: list[str] | None = None, preset: str = "fast", per_label: int | float | None = None,
                out_dir: str | Path | None = None, progress: Any = None, images: Any = None,
                root: str | Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Run a pairs CSV, identities CSV or folder of identity sub-folders through
    ``core.batch.run_batch`` and give what the tab shows: ``ok``, ``message``, ``summary``
    (Markdown), ``table`` (``headers``, ``values``, ``indices``: the pair index of each
    line), ``rows`` (the ``BatchRow`` list, to keep as state for filtering), ``methods`` and
    ``out`` (the folder ``explore_view`` reads). CSV file names are relative to ``images``
    when given, else to the CSV's folder; with ``root`` (an upload bundle) every file must
    lie inside it (``core.batch.run_batch``). ``out_dir`` defaults to a new folder under the
    process's temporary folder (removed at exit); ``per_label`` of 0 or None means every pair."""
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
            "table": _table(res.rows, res.methods), "rows": res.rows, "methods": res.methods, "out": str(out)}  # fmt: skip


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
    """A batch saved earlier (its folder), as ``run_explore`` gives it, without recomputing."""
    out = _path(out_dir)
    if not out:
        return {"ok": False, "message": "Give the folder of a saved batch."}
    try:
        res = load_batch(out)
    except XFVError as e:
        return {"ok": False, "message": f"Could not open this batch: {e}"}
    summary = res.summary()
    return {"ok": True, "message": f"Opened {summary['n_pairs']} pairs.", "summary": summary_markdown(summary, out), "summary_data": summary,
            "table": _table(res.rows, res.methods), "rows": res.rows, "methods": res.methods, "out": str(out)}  # fmt: skip


def explore_table(rows: list[BatchRow] | None, methods: list[str] | None = None, decision: str | None = "any", correct: str | None = "any",
                  min_cscore: float | None = None, text: str | None = None, sort_by: str = "index",
                  descending: bool = False) -> dict[str, Any]:  # fmt: skip
    """The table after the filters and the sort: ``decision`` and ``correct`` take the
    labels of ``DECISION_CHOICES`` / ``CORRECT_CHOICES`` (or their values), ``min_cscore``
    a number (0 or None: no filter), ``text`` a piece of a file name; ``sort_by`` a row key,
    a header or a method name. Gives ``table`` (as in ``run_explore``), ``rows`` (the
    lines shown, in order) and ``message`` (how many are shown)."""
    rows = list(rows or [])
    methods = list(methods) if methods is not None else list(dict.fromkeys(m for r in rows for m in r.runtimes))
    dec = DECISION_CHOICES.get(decision, decision) if isinstance(decision, str) else decision
    cor = CORRECT_CHOICES.get(correct, correct) if isinstance(correct, str) else correct
    if isinstance(cor, str):
        return {"ok": False, "message": f"unknown correctness filter {correct!r}; choose one of: {', '.join(CORRECT_CHOICES)}",
                "table": _table(rows, methods), "rows": rows}  # fmt: skip
    if sort_by not in sort_key_names(methods) and sort_by.lower() not in {h.lower() for h in rows_table([], methods)[0]}:
        return {"ok": False, "message": f"cannot sort by {sort_by!r}; choose one of: {', '.join(sort_key_names(methods))}",
                "table": _table(rows, methods), "rows": rows}  # fmt: skip
    shown = sort_rows(filter_rows(rows, dec, cor, float(min_cscore) if min_cscore else None, text), sort_by, bool(descending))
    return {"ok": True, "message": f"{len(shown)} of {len(rows)} pairs shown.", "table": _table(shown, methods), "rows": shown}


def selected_index(shown: list[BatchRow] | None, position: Any) -> int | None:
    """The pair index of the line a user clicked: ``position`` is the line number in the
    table shown (or Gradio's ``SelectData.index``, ``[line, column]``)."""
    if isinstance(position, (list, tuple)):
        position = position[0] if position else None
    if position is None or not shown:
        return None
    try:
        return shown[int(position)].index
    except (IndexError, ValueError, TypeError):
        return None


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
    try:
        batch = load_batch(out)
        row = batch.row(i)
    except XFVError as e:
        return {"ok": False, "message": f"Could not open pair {i}: {e}"}
    title = f"Pair {i}: {row.file_x} vs {row.file_y}"
    if not row.ok:
        return {"ok": False, "message": f"{title} could not be compared: {row.error}", "title": title}
    try:
        view = pair_view(out, i)
    except XFVError as e:
        return {"ok": False, "message": f"Could not open pair {i}: {e}", "title": title}
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
