"""Command line: ``python -m core COMMAND ...``, one module per command group.

Face verification (``verify``): ``verify``, ``calibrate``, ``eval``. Explanations
(``explain``): ``explain``, ``methods``. Many pairs (``batch``): ``batch``, ``map-stats``,
``faithfulness``. Concept bottlenecks (``cbm``): ``train-cbm``, ``cxr``, ``train-cxr``,
``mine-descriptors``. Models and their files (``models``): ``models``, ``pin-remote-code``,
``fetch-weights``, ``geometry-reference``. ``common`` holds what they share.

Examples::

    python -m core verify a.jpg b.jpg --json
    python -m core explain a.jpg b.jpg --methods xmap3,single_removal --out out/ --preset fast
    python -m core explain a.jpg b.jpg --methods xmap1,xmap2,xmap3 --cost
    python -m core explain a.jpg b.jpg --methods cam,geometry --report out/report
    python -m core explain a.jpg b.jpg --models sface,dlib_resnet --methods xmap3,cam --report out/both
    python -m core batch ../shared/data/faces/deepface/pairs.csv --methods xmap3 --per-label 10 --out out/batch
    python -m core map-stats ../shared/data/faces/deepface/pairs.csv --methods xmap1,xmap2,xmap3 --per-label 10
    python -m core faithfulness ../shared/data/faces/deepface/pairs.csv --methods xmap3,single_removal --per-label 10 --csv out/faith.csv
    python -m core methods
    python -m core calibrate ../shared/data/faces/deepface/identities.csv --images ../shared/data/faces/deepface
    python -m core eval ../shared/data/faces/deepface/pairs.csv --images ../shared/data/faces/deepface
    python -m core pin-remote-code adaface_ir101
    python -m core models --json
    python -m core train-cbm ../shared/data/faces/deepface/identities.csv --out out/cbm_head.pt --epochs 1
    python -m core cxr ../shared/data/cxr/00000001_000.png --head out/cxr_head.pt
    python -m core train-cxr xrays.csv --images xrays/ --out out/cxr_head.pt
    python -m core mine-descriptors --limit 100 --out out/descriptors.jsonl
    python -m core fetch-weights cxr cbm
    python -m core fetch-weights cxr --check
    python -m core geometry-reference ../shared/data/faces/deepface/identities.csv
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import XFVError
from . import batch, cbm, explain, models, verify
from .common import AddParser

#: The commands in the order ``--help`` lists them.
COMMANDS = ("verify", "explain", "batch", "map-stats", "faithfulness", "methods", "calibrate", "eval", "pin-remote-code", "models",
            "train-cbm", "cxr", "train-cxr", "mine-descriptors", "fetch-weights", "geometry-reference")  # fmt: skip


def _parsers() -> dict[str, AddParser]:
    """Every command module's parser adders, by command name."""
    found: dict[str, AddParser] = {}
    for module in (verify, explain, batch, cbm, models):
        for name, add in module.PARSERS.items():
            if name in found:
                raise RuntimeError(f"command {name!r} is declared twice (again in {module.__name__})")
            found[name] = add
    if set(found) != set(COMMANDS):
        raise RuntimeError(f"core.cli.COMMANDS and the command modules disagree: {sorted(set(found) ^ set(COMMANDS))}")
    return found


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description="Explainable face verification.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)
    adders = _parsers()
    for name in COMMANDS:
        adders[name](sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..device import tune_cpu_allocator

    tune_cpu_allocator()  # large forward buffers stay in the heap (core.device)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return args.func(args)
    except XFVError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


__all__ = ["COMMANDS", "build_parser", "main"]
