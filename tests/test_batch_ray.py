"""The Ray engine (core.batch.engine): the same tables as the local engine, a run killed half-way
that resumes to them (the CLI, as a user runs it), and a worker process killed mid-run that Ray
restarts with no pair lost or stored twice. Ray starts locally by itself (2 CPUs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from core.batch.engine import ray_init, run_store
from core.batch.parquet import read_table

from .conftest import ROOT

pytestmark = pytest.mark.needs_data
ray = pytest.importorskip("ray")

# LFW's pairs.txt: three sets (folds) of one matched and one mismatched pair; Eve_E has no photos
PAIRS_TXT = "3\t1\nAnn_A\t1\t2\nAnn_A\t1\tBob_B\t1\nCat_C\t1\t2\nCat_C\t2\tEve_E\t1\nDan_D\t1\t2\nBob_B\t2\tDan_D\t2\n"
N_PAIRS = 6


def _timeless(t):
    return t.drop([c for c in t.column_names if c.startswith("runtime")])


def _pairs_txt(tmp_path):
    p = tmp_path / "pairs.txt"
    p.write_text(PAIRS_TXT)
    return p


def _reference(runner, pairs, images, out, methods):
    """The local engine with one thread, as each Ray actor runs: the same bits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_store(runner, pairs, out, images, methods=methods, part_size=2)
    finally:
        torch.set_num_threads(threads)


def _same_tables(a, b) -> None:
    ids = read_table(a, "pairs").column("pair_id").to_pylist()
    assert ids == sorted(set(ids)) == list(range(N_PAIRS))  # each pair exactly once
    for t in ("pairs", "maps", "faces"):
        assert _timeless(read_table(a, t)).equals(_timeless(read_table(b, t))), t


def test_the_cli_killed_half_way_resumes_to_an_uninterrupted_runs_store(runner, lfw_images, tmp_path):
    pairs = _pairs_txt(tmp_path)
    out = tmp_path / "store"
    cmd = [sys.executable, "-m", "core", "batch", str(pairs), "--images", str(lfw_images), "--engine", "ray", "--workers", "2",
           "--methods", "xmap3,cam", "--out", str(out), "--part-size", "1", "-q"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while len(list((out / "pairs").glob("part-*.parquet"))) < 2:  # half-way: two of the six pairs stored
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no part written in 300 s"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, its local Ray and the workers, as a crash or a cancelled job
        proc.wait(timeout=60)
    stored = read_table(out, "pairs").num_rows
    assert 2 <= stored < N_PAIRS
    done = subprocess.run([*cmd, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"{stored} kept from the earlier run" in done.stdout and "engine ray, 2 worker(s)" in done.stdout
    _same_tables(out, _reference(runner, pairs, lfw_images, tmp_path / "reference", ["xmap3", "cam"]).out)
    assert read_table(out, "pairs").column("fold").to_pylist() == [0, 0, 1, 1, 2, 2]


@pytest.fixture(scope="module")
def local_ray():
    ray_init(2)
    yield
    ray.shutdown()


def test_a_worker_killed_mid_run_is_restarted_and_no_pair_is_lost_or_doubled(local_ray, runner, lfw_images, tmp_path):
    pairs = _pairs_txt(tmp_path)
    killed: list[int] = []

    def kill_once(part) -> None:
        if not killed:
            killed.append(part.worker_pid)
            os.kill(part.worker_pid, signal.SIGKILL)

    run = run_store(runner, pairs, tmp_path / "store", lfw_images, methods=["cam"], engine="ray", workers=2, part_size=1, on_part=kill_once)
    assert killed and killed[0] != os.getpid() and run.n_parts == N_PAIRS
    rows = read_table(run.out, "pairs").to_pylist()
    assert rows[3]["error"] and "Eve_E_0001.jpg" in rows[3]["error"]  # a missing photo is an error row
    _same_tables(run.out, _reference(runner, pairs, lfw_images, tmp_path / "reference", ["cam"]).out)
