"""``python -m core batch ... --store parquet`` (or ``--engine ray``): a whole benchmark into the
Parquet results store (``core.batch.engine``), then its summary (``core.batch.duck``)."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import DataError
from ..types import jsonable
from .common import _knobs, _runner, progress_bar, split_methods


def cmd_batch_store(args: argparse.Namespace) -> int:
    from ..batch.duck import StoreQuery, store_summary, summary_text
    from ..batch.engine import run_store

    if args.store == "folder":
        raise DataError("--engine ray writes the Parquet results store: drop --store folder (or use --engine local)")
    if not args.out:
        raise DataError("the results store needs --out: the folder to write it to (or to resume)")
    knobs = _knobs(args)
    knobs.pop("preset", None)
    try:
        with progress_bar("batch", args.quiet) as progress:
            run = run_store(_runner(args), args.source, args.out, args.images, split_methods(args.methods), preset=args.preset,
                            engine=args.engine, workers=args.workers, address=args.address, resume=args.resume, part_size=args.part_size,
                            faithfulness=args.faithfulness, per_label=args.per_label, limit=args.limit, progress=progress, **knobs)  # fmt: skip
    except KeyboardInterrupt:
        print(f"the parts finished so far are in {args.out}; add --resume to run the rest", file=sys.stderr)
        raise
    summary = store_summary(run.out)
    if args.json:
        print(
            json.dumps(
                jsonable({"summary": summary, "out": str(run.out), "n_run": run.n_run, "n_kept": run.n_kept, "seconds": run.seconds}), indent=2
            )
        )
        return 0
    q = StoreQuery(run.out)
    try:
        page = q.page(page_size=args.show)
    finally:
        q.close()
    for r in page.rows:
        verdict = (
            f"error: {r.error}"
            if r.error
            else f"{r.decision:<9} sim {r.similarity:.3f}" + ("" if r.correct is None else ("  right" if r.correct else "  WRONG"))
        )
        print(f"{r.index:>6}  {r.file_x}  {r.file_y}  {verdict}")
    if page.n_total > len(page.rows):
        print(f"... {page.n_total - len(page.rows)} more rows in {run.out}")
    print()
    for line in summary_text(summary):
        print(line)
    kept = f", {run.n_kept} kept from the earlier run" if run.n_kept else ""
    print(f"ran {run.n_run} pairs in {run.seconds:.1f} s ({run.pairs_per_s:.2f} pairs/s, engine {run.engine}, {run.workers} worker(s)){kept}")
    print(f"wrote the results store {run.out} (pairs/, maps/, faces/ Parquet parts; browse it with core.batch.duck.StoreQuery)")
    return 0
