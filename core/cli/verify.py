"""``verify`` (one pair), ``calibrate`` (threshold and C-Score from labelled pairs) and ``eval``
(verification metrics on a pairs CSV)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..data import read_labelled_pairs
from ..errors import XFVError
from .common import AddParser, Subparsers, _runner, model_args


def cmd_verify(args: argparse.Namespace) -> int:
    from ..text.verdict import verdict_sentence

    res = _runner(args).verify(args.image_a, args.image_b)
    if args.json:
        out = {k: v for k, v in res.to_dict().items() if k != "explanations"}
        if res.notes:
            out["note"] = " ".join(res.notes)
        print(json.dumps(out, indent=2))
    else:
        print(verdict_sentence(res))
        for n in res.notes:
            print(f"note: {n}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    import numpy as np

    from ..verify.calibration import build_calibration

    pairs, kind = read_labelled_pairs(args.csv)
    runner = _runner(args)
    sims, same, failed = runner.score_pairs(pairs, args.images, args.csv, progress=not args.quiet)
    if failed:
        logging.warning("%d of %d pairs could not be scored and were left out", len(failed), len(pairs))
    source = {
        "data": str(Path(args.csv).as_posix()),
        "kind": kind,
        "images": None if args.images is None else str(Path(args.images).as_posix()),
        "pairs_in_file": len(pairs),
        "pairs_used": len(sims),
        "pairs_failed": len(failed),
    }
    cal = build_calibration(1.0 - np.asarray(sims), same, runner.embedder.name, runner.embedder.weights_hash(),
                            source=source, folds=args.folds)  # fmt: skip
    path = cal.save(args.out)
    print(
        f"{cal.model}: threshold similarity {cal.threshold_similarity:.4f} (distance {cal.threshold_distance:.4f}), "
        f"10-fold accuracy {cal.cv_accuracy:.4f} ± {cal.cv_accuracy_std:.4f} from {cal.n_genuine} genuine and "
        f"{cal.n_impostor} impostor pairs; C-Score L={cal.cscore.L:.3f} d0={cal.cscore.d0:.4f} "
        f"k={cal.cscore.k:.2f} b={cal.cscore.b:.3f}; saved to {path}"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..evaluate.verification import verification_metrics

    pairs, _ = read_labelled_pairs(args.csv)
    runner = _runner(args)
    sims, same, failed = runner.score_pairs(pairs, args.images, args.csv, progress=not args.quiet)
    try:
        thr = runner.threshold()
    except XFVError:
        thr = None
    m = verification_metrics(sims, same, thr, failed=len(failed))
    if args.json:
        print(json.dumps({"model": runner.embedder.name, "threshold": thr, **m.to_dict()}, indent=2))
    else:
        acc = "n/a (no calibration)" if m.accuracy is None else f"{m.accuracy:.4f} at similarity >= {thr:.4f}"
        print(f"model          {runner.embedder.name}")
        print(f"pairs          {m.n_pairs} ({m.n_genuine} genuine, {m.n_impostor} impostor; {m.failed} failed)")
        print(f"accuracy       {acc}")
        print(f"ROC AUC        {m.roc_auc:.4f}")
        print(f"EER            {m.eer:.4f}")
        print(f"TAR@FAR=1e-3   {m.tar_at_far_1e3:.4f}")
    for p, why in failed:
        logging.warning("not scored: %s vs %s: %s", p.file_x, p.file_y, why)
    return 0


def add_verify(sub: Subparsers) -> None:
    v = sub.add_parser("verify", help="compare two face photos")
    v.add_argument("image_a")
    v.add_argument("image_b")
    model_args(v)
    v.add_argument("--threshold", type=float, help="decision threshold on cosine similarity (default: the calibration's)")
    v.add_argument("--calibration", help="calibration JSON (default: assets/calibration/MODEL.json)")
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.set_defaults(func=cmd_verify)


def add_calibrate(sub: Subparsers) -> None:
    c = sub.add_parser("calibrate", help="threshold and C-Score from a labelled pairs or identities CSV")
    c.add_argument("csv", help="file_x,file_y,same pairs CSV, or file,identity CSV (all pairs it implies)")
    c.add_argument("--images", help="folder the file names are relative to (default: the CSV's folder)")
    model_args(c)
    c.add_argument("--folds", type=int, default=10)
    c.add_argument("--out", help="where to write the JSON (default: assets/calibration/MODEL.json)")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_calibrate)


def add_eval(sub: Subparsers) -> None:
    e = sub.add_parser("eval", help="accuracy, ROC AUC, EER and TAR@FAR=1e-3 on a pairs CSV")
    e.add_argument("csv")
    e.add_argument("--images")
    model_args(e)
    e.add_argument("--threshold", type=float)
    e.add_argument("--calibration")
    e.add_argument("--json", action="store_true")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_eval)


#: This module's commands and what adds each one's parser.
PARSERS: dict[str, AddParser] = {"verify": add_verify, "calibrate": add_calibrate, "eval": add_eval}
