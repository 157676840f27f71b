"""Pairs per second of a whole-benchmark run: the local engine against Ray with 1 and 2 workers.

The same pairs (the first ``--pairs`` of ``../shared/data/faces/deepface/pairs.csv``), methods
(``--methods``, default ``xmap3,cam``) and preset (``--preset``, default fast) into a fresh
results store each time (``core.batch.engine.run_store``), all in this process, one after the
other. Each run's time includes its start-up (a local Ray, each actor loading the model), which a
benchmark of thousands of pairs amortises: so the script also prints the steady rate, from the
time between the first and the last part written. Scaling efficiency = (pairs/s with 2 workers)
/ (2 x pairs/s with 1 worker). On a GPU machine the Ray actors take ``num_gpus`` and the local
engine uses ``--device``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_PAIRS = Path(__file__).resolve().parents[2] / "shared/data/faces/deepface/pairs.csv"


def main() -> None:
    import torch

    from core.batch.engine import run_store
    from core.batch.work import PartResult
    from core.device import tune_cpu_allocator
    from core.runner import Runner

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs-csv", default=str(DEFAULT_PAIRS))
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--methods", default="xmap3,cam")
    ap.add_argument("--preset", default="fast", choices=("fast", "full"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--part-size", type=int, default=2)
    ap.add_argument("--runs", default="local,ray1,ray2", help="which runs, in order: local, rayN (N workers)")
    args = ap.parse_args()
    tune_cpu_allocator()
    methods = [m for m in args.methods.split(",") if m]
    runner = Runner(device=args.device)
    dev = runner.embedder.device
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "no GPU"
    print(f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}; "
          f"{args.pairs} pairs of {Path(args.pairs_csv).name}, methods {','.join(methods) or 'none'}, preset {args.preset}, "
          f"parts of {args.part_size}")  # fmt: skip
    rates: dict[str, float] = {}
    for name in args.runs.split(","):
        engine, workers = ("local", 1) if name == "local" else ("ray", int(name.removeprefix("ray")))
        stamps: list[float] = []
        n_pairs: list[int] = []

        def watch(part: PartResult, stamps: list[float] = stamps, n_pairs: list[int] = n_pairs) -> None:
            stamps.append(time.perf_counter())
            n_pairs.append(len(part.pairs))

        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run = run_store(runner, args.pairs_csv, Path(tmp) / "store", None, methods=methods, preset=args.preset, engine=engine, workers=workers,
                            part_size=args.part_size, limit=args.pairs, on_part=watch)  # fmt: skip
            total = time.perf_counter() - t0
        steady = (sum(n_pairs[1:]) / (stamps[-1] - stamps[0])) if len(stamps) > 2 else float("nan")
        rates[name] = steady
        threads = torch.get_num_threads() if engine == "local" else 1
        print(f"{name:<6} {engine:<5} {workers} worker(s) x {threads} thread(s): {run.n_run} pairs in {total:6.1f} s "
              f"({run.n_run / total:5.2f} pairs/s with start-up), steady {steady:5.2f} pairs/s")  # fmt: skip
    if "ray1" in rates and "ray2" in rates:
        print(f"scaling efficiency, Ray 2 workers against 1: {rates['ray2'] / (2 * rates['ray1']):.2f} (steady rates)")
    if "local" in rates and "ray2" in rates:
        print(f"Ray 2 workers against the local engine: {rates['ray2'] / rates['local']:.2f}x (steady rates)")


if __name__ == "__main__":
    main()
