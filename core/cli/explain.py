"""``explain`` (maps, scores and sentences for one pair: costed, run, written, printed) and
``methods`` (the registered explanation methods)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelUnavailableError
from ..types import jsonable
from .common import (
    AddParser,
    Subparsers,
    _knobs,
    _runner,
    int_arg,
    knob_flags,
    methods_arg,
    model_args,
    models_arg,
    progress_bar,
    split_methods,  # fmt: skip
)

if TYPE_CHECKING:
    from ..runner import Runner
    from ..types import PairResult


def _print_cost(methods: list[str], cost: dict[str, int]) -> int:
    """``--cost``: the forward passes each method costs at most, and their total."""
    for m in methods:
        print(f"{m:<20} {cost[m]:>8} forward passes" + ("  (shared with an earlier method)" if cost[m] == 0 else ""))
    print(f"{'total':<20} {cost['total']:>8} forward passes per pair (at most; cached results cost nothing)")
    return 0


def _without_model(runner: Runner, args: argparse.Namespace, methods: list[str], knobs: dict, error: Exception) -> int:
    """The model's weights are missing: say which and how to get them, then run the methods
    that need no model (the measured geometry) so some words still show. Exit code 1."""
    print(f"error: {error}", file=sys.stderr)
    free = runner.explain_without_model(args.image_a, args.image_b, methods, **knobs)
    if not free:
        print("(none of the chosen methods runs without the model; 'geometry' does)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"error": str(error), "explanations": [{"method": e.method, "text": e.text, "error": e.error, "scores": e.scores,
                                                               "extras": jsonable(e.extras)} for e in free]}, indent=2))  # fmt: skip
        return 1
    print(f"Without the model, only what needs no model: {', '.join(e.method for e in free)}.")
    for e in free:
        print(f"\n{e.label}:" + (f" failed: {e.error}" if not e.ok else ""))
        for line in e.text:
            print(f"  {line}")
    return 1


def _write_report(runner: Runner, res: PairResult, path: str) -> None:
    """``--report PATH``: the audit report, with each map's faithfulness on the pair."""
    from ..report import write_report

    faith = runner.faithfulness(res) if any(e.ok and len(e.maps) == 2 for e in res.explanations) else {}
    for written in write_report(res, path, faith):
        print(f"wrote {written}", file=sys.stderr)


def _write_pictures(res: PairResult, data: dict, out_dir: Path) -> None:
    """``--out DIR``: the faces, each method's blended pictures and maps (.npz), and
    result.json (``data``, with each method's file names added to its entry)."""
    import numpy as np

    from ..render import render_map, save_png, side_by_side

    out_dir.mkdir(parents=True, exist_ok=True)
    faces = [f.image for f in res.pair]
    save_png(out_dir / "face_a.png", faces[0])
    save_png(out_dir / "face_b.png", faces[1])
    for exp, entry in zip(res.explanations, data["explanations"], strict=True):
        if not exp.ok or not exp.maps:
            continue
        pics = [render_map(f, m, exp.signed, exp.extras.get("display")) for f, m in zip(faces, exp.maps, strict=True)]
        files = {"a": save_png(out_dir / f"{exp.method}_a.png", pics[0]).name,
                 "b": save_png(out_dir / f"{exp.method}_b.png", pics[1]).name,
                 "pair": save_png(out_dir / f"{exp.method}_pair.png", side_by_side([faces[0], pics[0], pics[1], faces[1]])).name,
                 "maps": f"{exp.method}_maps.npz"}  # fmt: skip
        np.savez_compressed(out_dir / files["maps"], a=exp.maps[0], b=exp.maps[1])
        entry["files"] = files
    (out_dir / "result.json").write_text(json.dumps(data, indent=2))


def _print_result(res: PairResult, out_dir: Path | None) -> None:
    """The verdict, the notes and each method's sentences, with its time and forward passes."""
    from ..text.verdict import verdict_sentence

    print(verdict_sentence(res))
    for n in res.notes:
        print(f"note: {n}")
    for exp in res.explanations:
        if not exp.ok:
            print(f"\n{exp.label}: failed: {exp.error}")
            continue
        if "forward_passes" in exp.scores:  # the perturbation methods count theirs (0: all from the cache)
            fp = int(exp.scores["forward_passes"])
            print(f"\n{exp.label} ({exp.runtime_s:.1f} s, {fp} forward passes{', cached' if fp == 0 else ''})")
        else:
            print(f"\n{exp.label} ({exp.runtime_s:.1f} s)")
        for line in exp.text:
            print(f"  {line}")
    if out_dir is not None:
        print(f"\nwrote {out_dir}/result.json and the pictures")


def _explain_models(args: argparse.Namespace, methods: list[str], knobs: dict) -> int:
    """``--models A,B``: the pair on each model, each later model's maps compared with the
    first's (``core.comparison``): decisions, maps, rank correlations, regions, faithfulness."""
    from ..comparison import compare_models
    from ..runner import Runner

    if args.threshold is not None or args.calibration:
        print("error: --threshold and --calibration set one model's; with --models each model uses its own calibration", file=sys.stderr)
        return 2
    runners = [Runner(model=m, device=args.device) for m in args.models]
    if args.cost:
        for r in runners:
            print(f"{r.model_name}:")
            _print_cost(methods, r.forward_passes(methods, **knobs))
        return 0
    try:
        with progress_bar("explaining", args.quiet) as progress:
            cmp = compare_models(runners, args.image_a, args.image_b, methods, progress=progress, **knobs)
    except ModelUnavailableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    data = cmp.to_dict()
    if args.report:
        from ..report_compare import write_comparison_report

        for written in write_comparison_report(cmp, args.report):
            print(f"wrote {written}", file=sys.stderr)
    if args.out:
        out_dir = Path(args.out)
        for model, res in cmp.results.items():
            _write_pictures(res, data["models"][model], out_dir / model)
        (out_dir / "comparison.json").write_text(json.dumps(data, indent=2))
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(cmp.decisions())
        for model, res in cmp.results.items():
            print(f"\n== {model} ==")
            _print_result(res, None)
        if cmp.methods:
            print("\n== the models compared ==")
        for a in cmp.methods:
            print(f"\n{a.sentence}")
            for model, scores in a.faithfulness.items():
                rnd = cmp.faithfulness.get(model, {}).get("random", {})
                base = rnd.get("deletion_auc", float("nan"))
                print(f"  deletion on its own model, {model}: {scores['deletion_auc']:+.3f} (random map {base:+.3f})")
        if args.out:
            print(f"\nwrote {args.out}/comparison.json and each model's pictures")
    return 0 if all(e.ok for r in cmp.results.values() for e in r.explanations) else 1


def cmd_explain(args: argparse.Namespace) -> int:
    methods = split_methods(args.methods)
    knobs = _knobs(args)
    if args.models:
        return _explain_models(args, methods, knobs)
    runner = _runner(args)
    cost = runner.forward_passes(methods, **knobs)
    if args.cost:
        return _print_cost(methods, cost)
    logging.info("%d forward passes at most", cost["total"])
    try:
        with progress_bar("explaining", args.quiet) as progress:  # closed before anything else is printed
            res = runner.explain(args.image_a, args.image_b, methods=methods, progress=progress, **knobs)
    except ModelUnavailableError as e:
        return _without_model(runner, args, methods, knobs, e)
    if args.report:
        _write_report(runner, res, args.report)
    out_dir = Path(args.out) if args.out else None
    data = res.to_dict()
    if out_dir is not None:
        _write_pictures(res, data, out_dir)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _print_result(res, out_dir)
    return 0 if all(e.ok for e in res.explanations) else 1


def _knob_words(k: dict[str, Any]) -> str:
    default = k["default"] if not isinstance(k["default"], list) else ",".join(str(v) for v in k["default"])
    default = "(none)" if default == "" else default
    if k["choices"] is not None:
        allowed = "/".join(str(c) for c in k["choices"])
    elif k["low"] is not None and k["high"] is not None:
        allowed = f"{k['low']:g}..{k['high']:g}"
    elif k["low"] is not None or k["high"] is not None:
        allowed = f">= {k['low']:g}" if k["low"] is not None else f"<= {k['high']:g}"
    else:
        allowed = ""
    return f"`{k['name']}`={default}" + (f" ({allowed})" if allowed else "")


def methods_markdown(rows: list[dict[str, Any]]) -> str:
    """The README's generated method table (``python -m core methods --markdown``)."""
    lines = ["| key | label | family | needs | map | forward passes per pair at 112 px (full / fast) | knobs |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        needs = ", ".join(r["requires"] + (["a gallery"] if r["needs_gallery"] else [])) or "nothing"
        scale = r["scale"] or ("words" if not r["gives_maps"] else "-")
        knobs = "; ".join(_knob_words(k) for k in r["knobs"] if k["name"] != "preset") or "-"
        lines.append(f"| `{r['name']}` | {r['label']} | {r['family']} | {needs} | {scale} | "
                     f"{r['forward_passes']['full']:,} / {r['forward_passes']['fast']:,} | {knobs} |")  # fmt: skip
    return "\n".join(lines)


def cmd_methods(args: argparse.Namespace) -> int:
    from ..registry import describe_explainers

    rows = describe_explainers()
    if args.json:
        print(json.dumps(rows, indent=2))
    elif args.markdown:
        print(methods_markdown(rows))
    else:
        for r in rows:
            print(f"{r['name']:<20} {r['label']:<30} needs {', '.join(r['requires']) or '-'}: {r['description']}")
    return 0


def add_explain(sub: Subparsers) -> None:
    x = sub.add_parser("explain", help="explanation maps, scores and region tables for two face photos")
    x.add_argument("image_a")
    x.add_argument("image_b")
    model_args(x)
    x.add_argument("--models", type=models_arg, metavar="A,B",
                   help="two or more face models side by side (e.g. sface,dlib_resnet): each one's decision and maps, and per method "
                        "the rank correlation of the maps, the regions each relies on and each map's faithfulness on its own model")  # fmt: skip
    x.add_argument(
        "--methods", default="xmap3", type=methods_arg, help="comma-separated methods, see `python -m core methods` (default: %(default)s)"
    )
    x.add_argument("--out", help="folder for the blended pictures, the maps (.npz) and result.json")
    x.add_argument("--report", metavar="PATH",
                   help="write an audit report: PATH.html (self-contained, opens offline) and PATH.json "
                        "(exact maps, scores, parameters, versions), with each map's faithfulness on the pair")  # fmt: skip
    x.add_argument(
        "--preset",
        choices=("fast", "full"),
        default="full",
        help="full: the papers' settings; fast: one occlusion scale and a coarser region grid (default: %(default)s)",
    )
    x.add_argument("--batch-size", type=int_arg(1, "--batch-size"), help="images per forward pass (a cost knob; results do not change)")
    x.add_argument("--seed", type=int, default=0, help="seed of the noise fills (X-Map noise patches, the aggregation start noise)")
    knob_flags(x)  # --patch-sizes, --stride, ..., --start-layer: from the explainers' knob dataclasses
    x.add_argument("--threshold", type=float)
    x.add_argument("--calibration")
    x.add_argument("--cost", action="store_true", help="only print how many forward passes the methods cost")
    x.add_argument("--json", action="store_true", help="print the result as JSON")
    x.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    x.set_defaults(func=cmd_explain)


def add_methods(sub: Subparsers) -> None:
    ms = sub.add_parser("methods", help="list the explanation methods")
    out = ms.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="every method with its label, family, needs, colours, cost and knobs, as JSON")
    out.add_argument("--markdown", action="store_true", help="the README's method table")
    ms.set_defaults(func=cmd_methods)


#: This module's commands and what adds each one's parser.
PARSERS: dict[str, AddParser] = {"explain": add_explain, "methods": add_methods}
