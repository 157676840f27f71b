"""Commands about the models and their files: ``models`` (the registered face models),
``pin-remote-code`` (trust a model's Hub code), ``fetch-weights`` (fill the Hugging Face cache)
and ``geometry-reference`` (the landmark-ratio population behind ``geometry``'s words)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..errors import DataError, XFVError
from ..registry import describe_models
from .common import AddParser, Subparsers


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
    from ..models.hub import REMOTE_CODE
    from ..models.pins import pin_remote_code, pins_path

    pin = pin_remote_code(args.model, REMOTE_CODE[args.model], args.revision)
    print(f"pinned {args.model} to {pin['repo']}@{pin['revision']} in {pins_path()}")
    for name, digest in pin["code_sha256"].items():
        print(f"  {digest}  {name}")
    print("it loads only while these files hash the same; pin again after reviewing a new revision")
    return 0


#: What ``fetch-weights`` fetches: the chest X-ray model and the face models with Hub weights.
_FETCH_ALIASES = {"cbm": "cbm_clip_vit_l14"}


#: Models fetched through the registry of ``core.models.downloads`` alone (the others also by
#: their own loaders' helpers, which ``--clip`` and the chest X-ray status use).
_REGISTRY_ONLY = ("facenet_vggface2", "adaface_ir101", "bert_qa")


def cmd_fetch_weights(args: argparse.Namespace) -> int:
    from ..models import downloads
    from ..models.cxr import cxr_status, fetch_cxr
    from ..models.weights import OPEN_CLIP_FACE_MODELS, download_hub_files, hub_cache, missing_hub_files, open_clip_hub_files

    names = downloads.names_of(args.models)
    if args.clip and names != ["cxr"]:
        raise DataError("--clip names the chest X-ray CLIP: use it with `fetch-weights cxr` alone")
    if args.plan or "all" in args.models or any(n in _REGISTRY_ONLY for n in names) or args.record:
        return _fetch_from_registry(args, names)
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


def _fetch_from_registry(args: argparse.Namespace, names: list[str]) -> int:
    """``fetch-weights`` over the registry (``core.models.downloads``): ``--plan`` prints what
    it would fetch; offline it exits 2 at once with the missing files, their URLs and where
    to put them; else it fetches, checks or records the SHA-256 of each and prints them."""
    from ..models import downloads

    items = downloads.plan(names)
    command = f"python -m core fetch-weights {' '.join(args.models)}"
    missing = [p for p in items if p.found is None]
    if args.plan or args.check:
        for line in downloads.plan_lines(items):
            print(line)
        print(f"{len(items) - len(missing)} of {len(items)} files here" + (f"; fetch the rest with `{command}`" if missing else ""))
        return 0 if args.plan or not missing else 1
    why = downloads.unavailable_reason() if missing else None
    if why is not None:
        print(f"error: cannot download here: {why}. {len(missing)} of {len(items)} files are missing; run `{command}` on a machine "
              "with internet and copy the caches here, or download each file from its URL to its place:", file=sys.stderr)  # fmt: skip
        for line in downloads.plan_lines(missing):
            print(line, file=sys.stderr)
        return 2
    for p, path, digest in downloads.fetch(items, record=args.record):
        check = "matches the recorded SHA-256" if p.sha256 else ("recorded" if args.record else "not recorded (add --record to pin it)")
        print(f"{p.model}: {path}\n    sha256 {digest} ({check})")
    return 0


def cmd_geometry_reference(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..explainers.geometry import face_ratios
    from ..faces.geometry import REFERENCE, build_reference, ratios_5
    from ..gallery import list_gallery
    from ..runner import Runner

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


def add_pin_remote_code(sub: Subparsers) -> None:
    from ..models.hub import REMOTE_CODE

    pr = sub.add_parser("pin-remote-code", help="trust a model's Hub code: record the reviewed revision and its files' SHA-256")
    pr.add_argument("model", choices=sorted(REMOTE_CODE))
    pr.add_argument("--revision", help="the commit to pin (default: the one the local cache has)")
    pr.set_defaults(func=cmd_pin_remote_code)


def add_models(sub: Subparsers) -> None:
    m = sub.add_parser("models", help="list the registered face models")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_models)


def add_fetch_weights(sub: Subparsers) -> None:
    fw = sub.add_parser("fetch-weights", help="download every file a model needs into the Hugging Face cache (on a machine with internet)")
    fw.add_argument("models", nargs="+", choices=("all", "cxr", "cbm_clip_vit_l14", "clip_vit_l14", "cbm", *_REGISTRY_ONLY), metavar="MODEL",
                    help="all, or: cxr (BiomedCLIP and its BiomedBERT text files), cbm_clip_vit_l14 (or cbm), clip_vit_l14 (CLIP ViT-L-14), "
                         "facenet_vggface2, adaface_ir101 (at the pinned revision), bert_qa (the chat's answerer)")  # fmt: skip
    fw.add_argument("--plan", action="store_true", help="print every file: its URL, where it goes, its recorded SHA-256; fetch nothing")
    fw.add_argument("--record", action="store_true", help="write the SHA-256 of fetched files not recorded yet (assets/weights/sha256.json)")
    fw.add_argument("--clip", help="cxr: an hf-hub:ORG/REPO or a local open_clip folder to fill (default: XFV_CXR_CLIP, else BiomedCLIP)")
    fw.add_argument("--check", action="store_true", help="only say what is here and what is missing (exit 1 when something is)")
    fw.set_defaults(func=cmd_fetch_weights)


def add_geometry_reference(sub: Subparsers) -> None:
    g = sub.add_parser("geometry-reference", help="landmark-ratio percentiles of a population of faces (the words of `geometry`)")
    g.add_argument("source", help="identities CSV (file,identity) or a folder of identity sub-folders")
    g.add_argument("--images", help="folder the CSV's file names are relative to (default: the CSV's folder)")
    g.add_argument("--out", help="JSON to write (default: assets/geometry/reference.json)")
    g.add_argument("--device", default="auto")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=cmd_geometry_reference)


#: This module's commands and what adds each one's parser.
PARSERS: dict[str, AddParser] = {"models": add_models, "pin-remote-code": add_pin_remote_code, "fetch-weights": add_fetch_weights,
                                 "geometry-reference": add_geometry_reference}  # fmt: skip
