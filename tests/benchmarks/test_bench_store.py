"""benchmarks/bench_store.py: the DuckDB pages it times are the in-memory table's pages (the
script checks each one), on a small store."""

import subprocess
import sys

from ..conftest import ROOT


def test_the_query_benchmark_runs_and_checks_its_pages():
    out = subprocess.run([sys.executable, "benchmarks/bench_store.py", "--rows", "3000", "--repeats", "1"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "3,000 pairs in 3 Parquet parts" in out.stdout and "slowest DuckDB page" in out.stdout
    assert out.stdout.count(" ms ") >= 5  # one line per query
