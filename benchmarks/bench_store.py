"""Results store speed and memory: DuckDB pages over a large store, and a long run's peak memory.

``--query`` (default): a synthetic store of ``--rows`` pairs (100,000: Parquet parts of 1,000,
as a run writes them) is filtered, sorted and paged with DuckDB (``core.batch.duck.StoreQuery``)
for a set of typical queries, each the best of ``--repeats``; the baseline is the in-memory
table of the batch path (``core.batch.filter_rows`` + ``sort_rows`` over the same rows, already
loaded), in the same process.

``--stream N``: the local engine (``core.batch.engine.run_store``) over N pairs drawn from the
photos of an identities CSV (``../shared/data/faces/deepface/identities.csv``: 60 photos, so
stage 1 aligns each once and stage 2 verifies N pairs), verification only (``--methods``
empty, the default) or with methods; prints pairs/s and the peak RSS after 10 %, 50 % and
100 % of the pairs: a flat line means memory stays bounded while streaming.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.batch import BatchRow, filter_rows, sort_rows
from core.batch.duck import StoreQuery
from core.batch.parquet import open_store, read_table
from core.batch.work import PairTask, PartResult, empty_row

METHODS = ["xmap3", "cam"]
QUERIES = [
    ("first page, pair order", {}),
    ("wrong decisions by C-Score", {"correct": False, "sort": "c_score", "descending": True}),
    ("same-person decisions by similarity, page 100", {"decision": "same", "sort": "similarity", "page": 100}),
    ("file name contains 'p42/', slowest X-Map first", {"text": "p42/", "sort": "xmap3", "descending": True}),
    ("C-Score >= 0.9, failed pairs excluded, by runtime", {"min_cscore": 0.9, "error": False, "sort": "runtime_s"}),
]


def machine() -> str:
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def synthetic_store(path: Path, n: int, part: int = 1000, seed: int = 0) -> list[BatchRow]:
    """A store of ``n`` synthetic pairs (3 % failed, 10 % without a C-Score) and the same rows."""
    rng = np.random.default_rng(seed)
    store = open_store(path, {"methods": METHODS, "faithfulness": False})
    rows = []
    for start in range(0, n, part):
        res = PartResult()
        for i in range(start, min(n, start + part)):
            same = bool(rng.random() < 0.5)
            r = empty_row(PairTask(i, f"p{i % 997}/a{i}.jpg", f"p{(i * 7) % 991}/b{i}.jpg", same, i // 600), METHODS, False)
            if rng.random() < 0.03:
                r["error"] = f"p{i}/b{i}.jpg: no face found"
            else:
                sim = float(rng.normal(0.6 if same else 0.1, 0.2))
                r.update(similarity=sim, threshold=0.36, decision="same" if sim >= 0.36 else "different",
                         c_score=None if rng.random() < 0.1 else float(rng.random()), runtime_s=float(rng.random() * 5))  # fmt: skip
                r["correct"] = r["decision"] == r["label"]
                r["runtime_xmap3"], r["runtime_cam"] = float(rng.random() * 4), float(rng.random())
            res.pairs.append(r)
            rows.append(BatchRow(i, r["file_x"], r["file_y"], r["label"], r["similarity"], r["threshold"], r["decision"], r["correct"],
                                 r["c_score"], r["runtime_s"], {m: r[f"runtime_{m}"] for m in METHODS if r[f"runtime_{m}"] is not None},
                                 r["error"]))  # fmt: skip
        store.write(res)
    store.close(True)
    return rows


def best(fn, repeats: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def run_query(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rows = synthetic_store(Path(tmp) / "store", args.rows)
        print(f"{machine()}; duckdb, {args.rows:,} pairs in {args.rows // 1000} Parquet parts (written in {time.perf_counter() - t0:.1f} s); "
              f"page of 50, best of {args.repeats}")  # fmt: skip
        t_open, q = best(lambda: StoreQuery(Path(tmp) / "store"), args.repeats)
        t_load, _ = best(lambda: read_table(Path(tmp) / "store", "pairs").to_pylist(), 1)
        print(f"open the store (views over the parts): {t_open * 1000:7.1f} ms; for comparison, loading every row into Python: {t_load:.2f} s")
        print(f"{'query':<52} {'matches':>8} {'DuckDB':>9} {'in memory':>10} {'ratio':>6}")
        worst = 0.0
        for name, spec in QUERIES:
            spec = dict(spec)
            page, sort, desc = spec.pop("page", 0), spec.pop("sort", "pair_id"), spec.pop("descending", False)
            td, got = best(lambda spec=spec, page=page, sort=sort, desc=desc: q.page(**spec, sort=sort, descending=desc, page=page), args.repeats)  # type: ignore[misc]
            key = "index" if sort == "pair_id" else sort
            tm, want = best(lambda spec=spec, key=key, desc=desc: sort_rows(filter_rows(rows, **spec), key, desc), args.repeats)  # type: ignore[misc]
            assert [r.index for r in got.rows] == [r.index for r in want[page * 50 : (page + 1) * 50]]  # type: ignore[attr-defined,index]
            worst = max(worst, td)
            print(f"{name:<52} {got.n_filtered:>8,} {td * 1000:>7.1f} ms {tm * 1000:>7.1f} ms {tm / td:>5.1f}x")  # type: ignore[attr-defined]
        print(f"slowest DuckDB page: {worst * 1000:.1f} ms (aim < 500 ms); the in-memory column needs every row loaded first")
        q.close()


def run_stream(args: argparse.Namespace) -> None:
    from core.batch.engine import run_store
    from core.data import read_csv
    from core.device import tune_cpu_allocator
    from core.runner import Runner

    tune_cpu_allocator()
    ids = read_csv(args.identities, ("file", "identity"))
    photos = [(r["file"], r["identity"]) for r in ids.rows]
    rng = np.random.default_rng(0)
    runner = Runner(device="cpu")
    methods = [m for m in args.methods.split(",") if m]
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "pairs.csv"
        lines = ["file_x,file_y,same"]
        for _ in range(args.stream):
            i, j = rng.choice(len(photos), 2, replace=False)
            lines.append(f"{photos[i][0]},{photos[j][0]},{int(photos[i][1] == photos[j][1])}")
        csv.write_text("\n".join(lines) + "\n")
        marks = {int(args.stream * f) for f in (0.1, 0.5, 1.0)}
        seen = {"n": 0}

        def watch(part: PartResult) -> None:
            before = seen["n"]
            seen["n"] += len(part.pairs)
            for m in sorted(marks):
                if before < m <= seen["n"]:
                    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                    print(f"  after {seen['n']:>7,} pairs: peak RSS {rss:7.1f} MB, {time.perf_counter() - t0:7.1f} s")

        print(f"{machine()}; local engine, {args.stream:,} pairs over {len(photos)} photos, methods {methods or 'none'}, parts of {args.part_size}")
        t0 = time.perf_counter()
        run = run_store(runner, csv, Path(tmp) / "store", Path(args.identities).parent, methods=methods, part_size=args.part_size,
                        on_part=watch)  # fmt: skip
        size = sum(f.stat().st_size for f in (Path(tmp) / "store").rglob("*.parquet")) / 1e6
        print(f"{run.n_run:,} pairs in {run.seconds:.1f} s: {run.pairs_per_s:.1f} pairs/s; store {size:.1f} MB on disk")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--stream", type=int, help="instead: the local engine over N synthetic pairs, peak RSS as it goes")
    ap.add_argument("--identities", default=str(Path(__file__).resolve().parents[2] / "shared/data/faces/deepface/identities.csv"))
    ap.add_argument("--methods", default="", help="for --stream: comma-separated methods (default: verification only)")
    ap.add_argument("--part-size", type=int, default=64)
    args = ap.parse_args()
    if args.stream:
        run_stream(args)
    else:
        run_query(args)


if __name__ == "__main__":
    main()
