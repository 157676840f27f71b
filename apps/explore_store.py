"""Handlers of the Explore tab for a results store (``python -m core batch ... --store parquet``
or ``--engine ray``): its summary, one page of its pairs filtered and sorted by DuckDB
(``core.batch.duck.StoreQuery``: no row is loaded that the page does not show, so a store of
100,000 pairs pages as fast as one of 100), and the maps of a stored pair, read back, never
recomputed (the row and the view, for `apps.explore.explore_view`, which turns their errors into messages).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core import XFVError
from core.batch import BatchRow
from core.batch.duck import StoreQuery, store_summary, stored_pair
from core.batch.parquet import is_store
from core.batch.view import PairView, result_view

PAGE_SIZE = 50


def summary_markdown(s: dict[str, Any], out: str | Path) -> str:
    """A store's summary (``core.batch.duck.store_summary``) as Markdown."""
    acc = "n/a (no labelled pair)" if s.get("accuracy") is None else f"**{s['accuracy']:.1%}** of {s['n_labelled']} labelled pairs"
    eer = "n/a (needs genuine and impostor pairs)" if s.get("eer") is None else f"{s['eer']:.2%}"
    c = s.get("c_score") or {}
    cs = "n/a (no calibration)" if not c.get("n") else f"median {c['median']:.3f} (quartiles {c['q25']:.3f} to {c['q75']:.3f})"
    lines = [f"- **{s['n_pairs']:,}** pairs: {s['n_compared']:,} compared, {s['n_errors']:,} failed (see the *error* column)",
             f"- decisions: {s['n_same']:,} same person, {s['n_different']:,} different people",
             f"- accuracy: {acc}; equal error rate: {eer}", f"- C-Score: {cs}"]  # fmt: skip
    if s.get("mean_runtime_s"):
        lines.append("- mean time per pair: " + ", ".join(f"{m} {t:.1f} s" for m, t in s["mean_runtime_s"].items()))
    for m, f in (s.get("faithfulness") or {}).items():
        lo, hi = f["deletion_auc_ci95"]
        verdict = "beats the random map" if hi < 0 else ("is worse than the random map" if lo > 0 else "is not distinguishable from the random map")
        lines.append(f"- **{m}** {verdict}: deletion area {f['deletion_auc']:.3f} against {f['deletion_auc_random']:.3f} "
                     f"(difference {f['deletion_auc_minus_random']:+.3f}, 95 % interval {lo:+.3f} to {hi:+.3f}, {f['n']} pairs)")  # fmt: skip
    lines.append(f"- results store `{out}` (Parquet, browsed with DuckDB)")
    return "\n".join(lines)


def open_store(out_dir: str | Path) -> dict[str, Any]:
    """A results store opened for the tab: as ``apps.explore.run_explore`` gives a batch, with
    ``store`` (its folder) instead of the whole list of rows (each page is a query)."""
    try:
        summary = store_summary(out_dir)
        q = StoreQuery(out_dir)
        methods = q.methods
        q.close()
    except XFVError as e:
        return {"ok": False, "message": f"Could not open this results store: {e}"}
    page = store_table(out_dir)
    return {"ok": True, "message": f"Opened a results store of {summary['n_pairs']:,} pairs.", "summary": summary_markdown(summary, out_dir),
            "summary_data": summary, **page, "methods": methods, "out": str(out_dir), "store": str(out_dir)}  # fmt: skip


def store_table(out_dir: str | Path, decision: str | None = None, correct: bool | None = None, min_cscore: float | None = None,
                text: str | None = None, sort_by: str = "index", descending: bool = False, page: Any = 0,
                page_size: int = PAGE_SIZE) -> dict[str, Any]:  # fmt: skip
    """One page of a store's pairs (filters as ``apps.explore.explore_table``'s values):
    ``table`` (``headers``, ``values``, ``indices``), ``rows`` (that page's rows), ``page``,
    ``pages`` and ``message``; a page past either end is clamped."""
    from apps.explore import _table, page_bounds, page_message

    try:
        wanted = int(page)
    except (TypeError, ValueError, OverflowError):
        wanted = 0
    try:
        q = StoreQuery(out_dir)
        try:
            args = {
                "decision": decision,
                "correct": correct,
                "min_cscore": min_cscore or None,
                "text": text,
                "sort": sort_by,
                "descending": bool(descending),
            }
            first = q.page(**args, page=max(0, wanted), page_size=page_size)
            number, pages, _, _ = page_bounds(first.n_filtered, wanted, page_size)
            got = first if number == max(0, wanted) else q.page(**args, page=number, page_size=page_size)
        finally:
            q.close()
    except XFVError as e:
        return {"ok": False, "message": str(e), "table": _table([], []), "rows": [], "page": 0, "pages": 1, "page_message": str(e)}
    msg = page_message(got.n_filtered, got.n_total, number, page_size)
    return {"ok": True, "table": _table(got.rows, q.methods), "rows": got.rows, "page": number, "pages": pages, "message": msg,
            "page_message": msg}  # fmt: skip


def store_row(out_dir: str | Path, index: int) -> BatchRow:
    """The row of a stored pair (``apps.explore.explore_view`` reads a store with it)."""
    q = StoreQuery(out_dir)
    try:
        return q.row(index)
    finally:
        q.close()


def store_pair_view(out_dir: str | Path, index: int, row: BatchRow) -> PairView:
    """What the viewer shows of a stored pair: its maps read back, never recomputed."""
    return result_view(stored_pair(out_dir, index), index, row)


__all__ = ["PAGE_SIZE", "is_store", "open_store", "store_pair_view", "store_row", "store_table", "summary_markdown"]
