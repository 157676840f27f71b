"""How good is a cheap X-Map preset? Each candidate preset against the full one (patches
7/14/28 at stride 5) over labelled pairs: the rank correlation of its maps with the full
maps, and the faithfulness of both (``core.evaluate.faithfulness``'s protocol).

    python benchmarks/fast_vs_full.py [--per-label 20] [--csv ../shared/data/faces/deepface/pairs.csv]

For every pair (the first ``--per-label`` genuine and impostor pairs), methods I, II and III
of each preset come from one set of occluded embeddings (``occlusion.xmaps``). Per method and
preset it prints:

- ``rho``: Spearman's rank correlation of the preset's map with the full preset's map of the
  same face, over every pixel of the crop, mean (and 10th percentile) over faces;
- ``passes``: forward passes of one pair (both faces, all scales);
- deletion and insertion areas of the decision margin, FAME's deletion and insertion nAUC,
  and the confidence drop at 20 % (``evaluate.faithfulness.method_figures``; lower deletion,
  higher insertion is better), beside the random baseline.

The README's fast-vs-full table is this script's output on 2-core CPU machines.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from core import Runner  # noqa: E402
from core.data import read_pairs, resolve  # noqa: E402
from core.device import tune_cpu_allocator  # noqa: E402
from core.evaluate.faithfulness import PairRecord, method_figures  # noqa: E402
from core.evaluate.maps import pick_pairs  # noqa: E402
from core.evaluate.probes import RANDOM, TOP_SHARE, pair_faithfulness, random_pair_faithfulness, resolve_fractions  # noqa: E402
from core.explainers import occlusion, perturb  # noqa: E402
from core.types import FacePair  # noqa: E402

DEFAULT_CSV = ROOT.parent / "shared" / "data" / "faces" / "deepface" / "pairs.csv"
#: name -> (patch sizes, stride) at 112 px; "fast" is the shipped fast preset.
CANDIDATES: dict[str, tuple[tuple[int, ...], int]] = {
    "fast": (occlusion.PRESETS["fast"].patch_sizes, occlusion.PRESETS["fast"].stride),
    "p14 s13": ((14,), 13),
    "p28 s13": ((28,), 13),
    "p35 s13": ((35,), 13),
    "p14+28 s18": ((14, 28), 18),
    "p21 s9": ((21,), 9),
}
COLUMNS = ("deletion_auc", "insertion_auc", "fame_deletion_nauc", "fame_insertion_nauc", "confidence_drop_pct")


def params_of(name: str) -> occlusion.XMapParams:
    if name == "full":
        return occlusion.PRESETS["full"]
    sizes, stride = CANDIDATES[name]
    return occlusion.XMapParams.from_knobs(patch_sizes=sizes, stride=stride)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--images", type=Path, default=None, help="folder of the CSV's files (default: the CSV's folder)")
    ap.add_argument("--per-label", type=int, default=20)
    ap.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated names of CANDIDATES")
    ap.add_argument("--model", default="sface")
    args = ap.parse_args()
    tune_cpu_allocator()
    names = ["full", *[c.strip() for c in args.candidates.split(",") if c.strip()]]
    runner = Runner(model=args.model, device="cpu")
    emb = runner.embedder
    thr = runner.threshold()
    fr = resolve_fractions(None, TOP_SHARE)
    pairs = pick_pairs(read_pairs(args.csv), args.per_label)
    records: dict[str, dict[int, list[PairRecord]]] = {n: {m: [] for m in occlusion.METHODS} for n in names}
    random_records: list[PairRecord] = []
    rho: dict[str, dict[int, list[float]]] = {n: {m: [] for m in occlusion.METHODS} for n in names if n != "full"}
    passes: dict[str, int] = {n: occlusion.forward_passes(int(emb.input_size), **params_of(n).to_dict())[1] for n in names}
    seconds = dict.fromkeys(names, 0.0)
    t_all = time.perf_counter()
    for i, p in enumerate(pairs):
        try:
            pair = FacePair(*(runner.prepare(resolve(args.images, f, args.csv), f) for f in (p.file_x, p.file_y)))
        except Exception as e:  # a pair without a face is left out, as in core.evaluate
            print(f"left out {p.file_x} / {p.file_y}: {e}", file=sys.stderr)
            continue
        clean = perturb.embed_faces(emb, [pair.a.image, pair.b.image]).numpy()
        maps = {}
        for n in names:
            perturb.clear_cache()
            t = time.perf_counter()
            maps[n] = occlusion.xmaps(pair, emb, occlusion.METHODS, params_of(n))
            seconds[n] += time.perf_counter() - t
        for n in names:
            for m in occlusion.METHODS:
                mm = maps[n][m]["maps"]
                pf = pair_faithfulness(emb, pair, mm, True, thr, fractions=fr, embeddings=clean, method=f"xmap{m}")
                records[n][m].append(PairRecord(i, p.file_x, p.file_y, bool(p.same), pf))
                if n != "full":
                    for face in (0, 1):
                        rho[n][m].append(float(spearmanr(mm[face].ravel(), maps["full"][m]["maps"][face].ravel())[0]))
        rand = random_pair_faithfulness(emb, pair, thr, pair_index=i, embeddings=clean, fractions=fr)
        random_records.append(PairRecord(i, p.file_x, p.file_y, bool(p.same), rand))
        print(f"pair {i + 1}/{len(pairs)} done ({time.perf_counter() - t_all:.0f} s)", file=sys.stderr, flush=True)
    n_pairs = len(random_records)
    print(f"\n{args.model}, {n_pairs} pairs of {args.csv.name} ({sum(r.same for r in random_records)} genuine), threshold {thr:.4f}")
    print("seconds per pair: " + ", ".join(f"{n} {seconds[n] / max(1, n_pairs):.2f}" for n in names))
    head = "| method | preset | passes | rho vs full (mean, p10) | " + " | ".join(COLUMNS) + " |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for m in occlusion.METHODS:
        for n in names:
            row, _ = method_figures(records[n][m], fr, TOP_SHARE)
            r = "1 (itself)" if n == "full" else f"{np.mean(rho[n][m]):.3f} ({np.percentile(rho[n][m], 10):.3f})"
            sizes, stride = (params_of(n).patch_sizes, params_of(n).stride)
            label = f"{n} ({'/'.join(map(str, sizes))}, s{stride})"
            print(f"| X-Map {'I' * m if m < 3 else 'III'} | {label} | {passes[n]:,} | {r} | " + " | ".join(f"{row[c]:.3f}" for c in COLUMNS) + " |")
    row, _ = method_figures(random_records, fr, TOP_SHARE)
    print(f"| {RANDOM} | - | 0 | - | " + " | ".join(f"{row[c]:.3f}" for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
