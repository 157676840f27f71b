"""Removal/aggregation speed (Mery and Morris): the chosen methods on one pair against the
true floor (the model alone on exactly the images they embedded, best batch size and
layout under ``inference_mode``: ``benchmarks/floor.py``), in one process, interleaved.

    python benchmarks/bench_removal.py [--methods single_removal,...] [--preset fast|full] [--repeats 3] [--no-mallopt]

Prints the methods' time, their counted forward passes, the floor and the ratio (aim <= 1.1).
The greedy searches' images depend on the search, so they are recorded from the run.
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


from benchmarks.bench_embed import machine  # noqa: E402
from benchmarks.floor import RecordInputs, bench_args, bench_setup, floor_run, true_floor  # noqa: E402
from core.explainers import perturb  # noqa: E402
from core.explainers.minplus import METHODS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bench_args(ap)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--preset", default="fast", choices=("fast", "full"))
    args = ap.parse_args()
    tuned, runner, pair, sync = bench_setup(args)
    emb = runner.embedder
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]

    def run() -> None:
        perturb.clear_cache()
        res = runner.explain(pair, methods=methods, preset=args.preset)
        bad = [e.method for e in res.explanations if not e.ok]
        if bad:
            raise SystemExit(f"failed: {bad}")

    def timed(fn) -> float:
        sync()
        t = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t

    run()  # warm-up
    with RecordInputs(emb) as rec:
        run()
    images = rec.images()
    floor = true_floor(emb.module, images, sync)
    run_b = floor_run(emb.module, images, floor)
    ta, tb = [], []
    for _ in range(args.repeats):
        ta.append(timed(run))
        tb.append(timed(run_b))
    a, b = min(ta), min(tb)
    print(f"{machine(emb.device)}; model {emb.name} ({emb.input_size} px), preset {args.preset}, allocator tuned: {tuned}")
    print(f"methods {', '.join(methods)}: {len(images)} images embedded; best of {args.repeats} interleaved runs")
    print(f"(a) removal/aggregation          {a:8.2f} s  {len(images) / a:7.1f} img/s")
    print(f"(b) true floor, same images      {b:8.2f} s  {len(images) / b:7.1f} img/s   a/b = {a / b:.2f}  (aim <= 1.1)"
          f"   best: batch {floor.batch_size}, {floor.layout}")  # fmt: skip


if __name__ == "__main__":
    main()
