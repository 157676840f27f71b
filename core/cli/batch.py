"""Commands over many pairs: ``batch`` (verify and explain a pairs CSV or a folder),
``map-stats`` (mean maps of genuine against impostor pairs) and ``faithfulness`` (how
faithful each method's maps are, against random maps)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..data import read_labelled_pairs
from ..errors import DataError
from ..types import jsonable
from .common import (
    AddParser,
    Subparsers,
    _fill_arg,
    _knobs,
    _runner,
    _share_arg,
    _steps_arg,
    int_arg,
    knob_flags,
    methods_arg,
    model_args,
    progress_bar,
    split_methods,
)

if TYPE_CHECKING:
    from ..batch import BatchResult
    from ..runner import Runner


def _print_rows(res: BatchResult, show: int) -> None:
    """The first ``show`` rows as an aligned table, each row's error after it."""
    from ..batch import rows_table

    headers, table = rows_table(res.rows[:show], res.methods)
    err = headers.index("error")
    cells = [["" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v) for v in line] for line in table]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True)) if i != err))
    for c in cells:
        line = "  ".join(v.ljust(w) for i, (v, w) in enumerate(zip(c, widths, strict=True)) if i != err)
        print(line + (f"  error: {c[err]}" if c[err] else ""))
    if len(res.rows) > len(table):
        print(f"... {len(res.rows) - len(table)} more rows" + (f" in {res.out / 'pairs.csv'}" if res.out is not None else " (--show N, --out DIR)"))


def cmd_batch(args: argparse.Namespace) -> int:
    from ..batch import run_batch, summary_lines

    if args.engine == "ray" or args.store == "parquet":
        from .batch_store import cmd_batch_store

        return cmd_batch_store(args)
    if args.workers != 1 or args.address or args.faithfulness:
        raise DataError("--workers, --address and --faithfulness need the results store: add --store parquet (or --engine ray)")
    methods = split_methods(args.methods)
    runner = _runner(args)
    knobs = _knobs(args)
    knobs.pop("preset", None)
    if args.resume and not args.out:
        raise DataError("--resume needs --out: the folder of the batch to finish")
    try:
        with progress_bar("batch", args.quiet) as progress:
            res = run_batch(runner, args.source, args.images, methods, out=args.out, preset=args.preset, per_label=args.per_label,
                            progress=progress, limit=args.limit, resume=args.resume, **knobs)  # fmt: skip
    except KeyboardInterrupt:
        if args.out:
            print(f"the pairs finished so far are in {Path(args.out) / 'pairs.csv'}; add --resume to run the rest", file=sys.stderr)
        raise
    summary = res.summary()
    if args.json:
        out = {"summary": summary, "methods": res.methods, "model": res.model, "out": None if res.out is None else str(res.out),
               "rows": [r.to_dict() for r in res.rows]}  # fmt: skip
        print(json.dumps(jsonable(out), indent=2))
        return 0
    _print_rows(res, args.show)
    print()
    for line in summary_lines(summary):
        print(line)
    if res.out is not None:
        print(f"wrote {res.out / 'pairs.csv'} and {res.out / 'pairs'}/<index>.json")
    return 0


def cmd_map_stats(args: argparse.Namespace) -> int:
    from ..evaluate.maps import map_means, pick_pairs

    pairs, _ = read_labelled_pairs(args.csv)
    pairs = pick_pairs(pairs, args.per_label)
    methods = split_methods(args.methods)
    res = map_means(_runner(args), pairs, args.images, args.csv, methods, progress=not args.quiet, **_knobs(args))
    rows = res.summary()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'method':<20} {'genuine':>9} {'impostor':>9}   pairs   genuine > impostor")
    for r in rows:
        sep = "yes" if r["separated"] else "NO"
        print(f"{r['method']:<20} {r['genuine_mean']:>+9.4f} {r['impostor_mean']:>+9.4f}   {r['n_genuine']}+{r['n_impostor']}   {sep}")
    if res.failed:
        print(f"{len(res.failed)} pairs had no face and were left out")
    return 0


def _map_methods(runner: Runner, gallery: str | None) -> list[str]:
    """Every registered method that gives maps and that the model can run (the SDD ones only
    with a gallery), with a warning for each kind left out."""
    from ..registry import explainer_names, explainer_spec
    from ..runner import model_capabilities

    caps = model_capabilities(runner.embedder)

    def runnable(m: str) -> bool:
        spec = explainer_spec(m)
        return spec.gives_maps and spec.requires <= caps and bool(gallery or not spec.needs_gallery)

    methods = [m for m in explainer_names() if runnable(m)]
    if not gallery:
        logging.warning("SDD needs --gallery; measuring the other methods")
    skipped = [m for m in explainer_names() if not explainer_spec(m).requires <= caps]
    if skipped:
        logging.warning("model '%s' cannot run %s; measuring the others", runner.embedder.name, ", ".join(skipped))
    return methods


def cmd_faithfulness(args: argparse.Namespace) -> int:
    import math

    import numpy as np

    from ..evaluate.faithfulness import faithfulness
    from ..evaluate.maps import pick_pairs

    pairs, _ = read_labelled_pairs(args.csv)
    pairs = pick_pairs(pairs, args.per_label)
    runner = _runner(args)
    methods = split_methods(args.methods) if args.methods else _map_methods(runner, args.gallery)
    knobs = _knobs(args)
    batch_size, seed = knobs.pop("batch_size", None), knobs.pop("seed", 0)
    rep = faithfulness(runner, pairs, args.images, args.csv, methods, fractions=np.linspace(0.0, 1.0, args.curve_steps),
                       top_share=args.top_share, fill=args.fill, seed=seed, batch_size=batch_size, progress=not args.quiet,
                       **knobs)  # fmt: skip
    written = rep.to_csv(args.csv_out) if args.csv_out else None
    if args.json:

        def clean(row: dict) -> dict:
            return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}

        out = {"rows": [clean(r) for r in rep.rows()], "curves": [clean(r) for r in rep.curves()],
               "fractions": rep.fractions.tolist(), "top_share": rep.top_share, "fill": args.fill,
               "failed_pairs": [{"file_x": p.file_x, "file_y": p.file_y, "error": why} for p, why in rep.failed]}  # fmt: skip
        print(json.dumps(out, indent=2))
        return 0
    print(rep.table())
    if rep.failed:
        print(f"{len(rep.failed)} of {len(pairs)} pairs had no face and were left out")
    if written is not None:
        print(f"wrote {written[0]} and {written[1]}")
    return 0


def add_batch(sub: Subparsers) -> None:
    bt = sub.add_parser("batch", help="verify and explain every pair of a pairs CSV or a folder: a table of decisions, correctness and C-Scores")
    bt.add_argument("source", help="file_x,file_y[,same] pairs CSV, file,identity CSV, a folder of identity sub-folders, or a "
                    "benchmark pair list: LFW's or XQLFW's pairs.txt (folds kept), pairs_CALFW.txt, pairs_CPLFW.txt")  # fmt: skip
    bt.add_argument("--images", help="folder the CSV's file names are relative to (default: the CSV's folder)")
    model_args(bt)
    bt.add_argument(
        "--methods",
        default="xmap3",
        type=lambda v: methods_arg(v) if v.strip() else [],
        help="comma-separated methods, empty for none (default: %(default)s)",
    )
    bt.add_argument("--out", help="folder for pairs.csv, batch.json and pairs/<index>.json (exact maps, to reopen a pair later)")
    bt.add_argument("--resume", action="store_true", help="keep the pairs an earlier, stopped run of the same settings finished in --out")
    bt.add_argument("--preset", choices=("fast", "full"), default="fast", help="explainer settings (default: %(default)s)")
    bt.add_argument("--per-label", type=int, help="use only the first N genuine and N impostor pairs (and N unlabelled)")
    bt.add_argument("--limit", type=int, help="use only the first N pairs (after --per-label)")
    bt.add_argument("--batch-size", type=int_arg(1, "--batch-size"), help="images per forward pass (a cost knob; results do not change)")
    bt.add_argument("--seed", type=int, default=0, help="seed of the noise fill")
    bt.add_argument("--threshold", type=float, help="decision threshold on cosine similarity (default: the calibration's)")
    bt.add_argument("--calibration", help="calibration JSON (default: assets/calibration/MODEL.json)")
    knob_flags(bt)  # --patch-sizes ... --start-layer and --gallery, from the explainers' knob dataclasses
    bt.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: in this process (default); ray: Ray actors, one model each (writes the Parquet store)",
    )
    bt.add_argument("--store", choices=("folder", "parquet"),
                    help="folder: pairs.csv and one JSON per pair (default with --engine local); parquet: the results store, "
                         "Parquet parts to browse with DuckDB (default and required with --engine ray)")  # fmt: skip
    bt.add_argument("--workers", type=int_arg(1, "--workers"), default=1, help="Ray actors, each with one model (default: %(default)s)")
    bt.add_argument("--address", help="a running Ray cluster: auto or HOST:PORT (default: start a local Ray with --workers CPUs)")
    bt.add_argument("--part-size", type=int_arg(1, "--part-size"), default=8, help="pairs per Parquet part (default: %(default)s)")
    bt.add_argument("--faithfulness", action="store_true", help="also store each method's deletion/insertion scores and the random map's")
    bt.add_argument("--show", type=int, default=50, help="rows to print (default: %(default)s; all are in --out)")
    bt.add_argument("--json", action="store_true", help="print the summary and every row as JSON")
    bt.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    bt.set_defaults(func=cmd_batch)


def add_map_stats(sub: Subparsers) -> None:
    st = sub.add_parser("map-stats", help="mean explanation map of genuine against impostor pairs, method by method")
    st.add_argument("csv", help="file_x,file_y,same pairs CSV (or file,identity CSV)")
    st.add_argument("--images")
    model_args(st)
    st.add_argument("--methods", default="xmap1,xmap2,xmap3", type=methods_arg)
    st.add_argument("--per-label", type=int, help="use only the first N genuine and N impostor pairs")
    st.add_argument("--preset", choices=("fast", "full"), default="fast")
    st.add_argument("--batch-size", type=int)
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--threshold", type=float)
    st.add_argument("--calibration")
    knob_flags(st)
    st.add_argument("--json", action="store_true")
    st.add_argument("-q", "--quiet", action="store_true")
    st.set_defaults(func=cmd_map_stats)


def add_faithfulness(sub: Subparsers) -> None:
    fa = sub.add_parser(
        "faithfulness",
        help="deletion / insertion, confidence drop, recall / TNR and FAME faithfulness of the maps, against random maps",
    )
    fa.add_argument("csv", help="file_x,file_y,same pairs CSV (or file,identity CSV)")
    fa.add_argument("--images", help="folder the file names are relative to (default: the CSV's folder)")
    model_args(fa)
    fa.add_argument("--methods", type=methods_arg,
                    help="comma-separated methods (default: every registered method; the SDD ones only with --gallery); "
                         "the 'random' baseline is always added")  # fmt: skip
    fa.add_argument("--per-label", type=int, help="use only the first N genuine and N impostor pairs")
    fa.add_argument("--preset", choices=("fast", "full"), default="fast", help="explainer settings (default: %(default)s)")
    fa.add_argument("--steps", dest="curve_steps", metavar="N", type=_steps_arg, default=11,
                    help="fractions of the curves, evenly from 0 to 100 %% (default: %(default)s, FAME's)")  # fmt: skip
    fa.add_argument(
        "--top-share", type=_share_arg, default=0.2, help="share hidden for the confidence drop and prediction change (default: %(default)s)"
    )
    fa.add_argument("--fill", type=_fill_arg, default="black",
                    help="what hidden pixels become: black, grey, white, noise, mean or a grey level (default: %(default)s)")  # fmt: skip
    fa.add_argument("--batch-size", type=int, help="images per forward pass (a cost knob; results do not change)")
    fa.add_argument("--seed", type=int, default=0, help="seed of the random baseline, the tie order and the noise fill")
    fa.add_argument("--threshold", type=float, help="decision threshold on cosine similarity (default: the calibration's)")
    fa.add_argument("--calibration", help="calibration JSON (default: assets/calibration/MODEL.json)")
    knob_flags(fa, rename={"steps": "map-steps", "fill": "map-fill"})  # --steps and --fill are the curves' own here
    fa.add_argument("--csv", dest="csv_out", metavar="OUT", help="write the rows to OUT and the curves to OUT with _curves before the suffix")
    fa.add_argument("--json", action="store_true", help="print rows and curves as JSON")
    fa.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    fa.set_defaults(func=cmd_faithfulness)


#: This module's commands and what adds each one's parser.
PARSERS: dict[str, AddParser] = {"batch": add_batch, "map-stats": add_map_stats, "faithfulness": add_faithfulness}
