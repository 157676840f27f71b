"""The results store (core.batch.parquet), the local engine (core.batch.engine) and browsing
with DuckDB (core.batch.duck): what a run stores, that an interrupted run resumes to the same
tables, that the SQL filters and sorts as the in-memory table does, the summary's numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from scipy import stats

from core.batch import BatchRow, filter_rows, sort_rows
from core.batch.duck import StoreQuery, store_summary, stored_pair
from core.batch.engine import run_store
from core.batch.parquet import open_store, read_table
from core.batch.work import PairTask, PartResult, empty_row
from core.errors import DataError
from core.evaluate.verification import eer
from core.types import FacePair

from .conftest import DEEPFACE

pytestmark = pytest.mark.needs_data

# img5 and img10 are person01, img12 person02 (identities.csv); the last pair's file is missing
PAIRS = "file_x,file_y,same\nimg5.jpg,img10.jpg,1\nimg5.jpg,img12.jpg,0\nimg10.jpg,img12.jpg,0\nimg5.jpg,missing.jpg,1\n"


def _timeless(t):
    return t.drop([c for c in t.column_names if c.startswith("runtime")])


@pytest.fixture(scope="module")
def pairs_csv(tmp_path_factory):
    d = tmp_path_factory.mktemp("pairs")
    (d / "pairs.csv").write_text(PAIRS)
    return d / "pairs.csv"


@pytest.fixture(scope="module")
def full(runner, pairs_csv, tmp_path_factory):
    """An uninterrupted local run (one thread, as each Ray actor runs) with faithfulness."""
    out = tmp_path_factory.mktemp("full") / "store"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = run_store(runner, pairs_csv, out, DEEPFACE, methods=["cam", "xmap3"], part_size=2, faithfulness=True)
    finally:
        torch.set_num_threads(threads)
    return run


def test_a_run_stores_every_pair_its_maps_and_its_settings(full, runner):
    pairs = read_table(full.out, "pairs")
    assert pairs.column("pair_id").to_pylist() == [0, 1, 2, 3] and full.n_parts == 2
    rows = pairs.to_pylist()
    assert rows[3]["error"] and "missing.jpg" in rows[3]["error"] and rows[3]["similarity"] is None  # a bad photo: an error row
    assert [r["label"] for r in rows[:3]] == ["same", "different", "different"]
    for r in rows[:3]:
        assert r["threshold"] == pytest.approx(runner.threshold()) and r["correct"] == (r["decision"] == r["label"])
        assert r["passes_xmap3"] > 0
        shares = dict(r["regions_cam"])
        assert {"left_eye", "nose", "mouth"} <= set(shares) and sum(shares.values()) == pytest.approx(1.0, abs=1e-6)
        assert r["faith_cam_deletion_auc"] is not None and r["faith_random_deletion_auc"] is not None
    maps = read_table(full.out, "maps")
    assert maps.num_rows == 6 and set(maps.column("method").to_pylist()) == {"cam", "xmap3"}
    assert sorted(read_table(full.out, "faces").column("photo").to_pylist()) == ["img10.jpg", "img12.jpg", "img5.jpg"]  # each photo once
    meta = json.loads((full.out / "store.json").read_text())
    assert meta["complete"] and meta["settings"]["weights_sha256"] == runner.embedder.weights_hash()
    assert meta["summary"]["n_pairs"] == 4 and meta["summary"]["n_errors"] == 1
    part = sorted((full.out / "pairs").glob("part-*.parquet"))[0]
    assert json.loads(pq.read_schema(part).metadata[b"xfv"])["methods"] == ["cam", "xmap3"]


def test_a_stored_pair_comes_back_with_its_maps_without_recomputing(full, runner, monkeypatch):
    monkeypatch.setattr(type(runner), "explain", lambda *a, **k: pytest.fail("recomputed"))
    res = stored_pair(full.out, 0)
    a, b = runner.prepare(DEEPFACE / "img5.jpg"), runner.prepare(DEEPFACE / "img10.jpg")
    assert np.array_equal(res.pair.a.image, a.image) and np.array_equal(res.pair.b.image, b.image)  # lossless crops
    monkeypatch.undo()
    torch.set_num_threads(1)
    try:
        again = runner.explain(FacePair(a, b), methods=["cam"])
    finally:
        torch.set_num_threads(2)
    assert res.similarity == pytest.approx(again.similarity, abs=1e-6)
    assert [e.method for e in res.explanations] == ["cam", "xmap3"] and all(len(e.maps) == 2 and e.text for e in res.explanations)
    got, want = res.explanations[0], again.explanations[0]
    assert len(got.text) == len(want.text) and got.signed == want.signed  # the same sentences (a percentage may round apart)
    for g, w in zip(got.maps, want.maps, strict=True):  # float16 as stored: 3 significant digits
        assert np.allclose(g, w, rtol=2e-3, atol=2e-3 * np.abs(w).max())
    with pytest.raises(DataError, match="could not be compared"):
        stored_pair(full.out, 3)


def test_an_interrupted_run_resumes_to_the_same_tables(full, runner, pairs_csv, tmp_path):
    out = tmp_path / "store"

    def stop(part: PartResult) -> None:
        raise KeyboardInterrupt

    torch.set_num_threads(1)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_store(runner, pairs_csv, out, DEEPFACE, methods=["cam", "xmap3"], part_size=2, faithfulness=True, on_part=stop)
        assert len(list((out / "pairs").glob("part-*.parquet"))) == 1 and not json.loads((out / "store.json").read_text())["complete"]
        (out / "maps" / "part-deadbeef.parquet").write_bytes(b"half a part")  # a part the kill cut off: no pairs file
        (out / "pairs" / ".part-x.parquet.tmp").write_bytes(b"half written")
        with pytest.raises(DataError, match="other settings"):
            run_store(runner, pairs_csv, out, DEEPFACE, methods=["cam"], part_size=2, faithfulness=True, resume=True)
        run = run_store(runner, pairs_csv, out, DEEPFACE, methods=["cam", "xmap3"], part_size=2, faithfulness=True, resume=True)
    finally:
        torch.set_num_threads(2)
    assert (run.n_kept, run.n_run) == (2, 2)
    assert not (out / "maps" / "part-deadbeef.parquet").exists() and not (out / "pairs" / ".part-x.parquet.tmp").exists()
    for t in ("pairs", "maps", "faces"):
        assert _timeless(read_table(out, t)).equals(_timeless(read_table(full.out, t))), t


def test_a_folder_that_is_not_a_store_is_not_overwritten(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a results store"):
        open_store(tmp_path, {"methods": []})


# -- DuckDB over a synthetic store ---------------------------------------------------------------
METHODS = ["xmap3", "cam"]


def _synthetic(path, n: int, seed: int = 0, faith: bool = False) -> list[BatchRow]:
    """A store of ``n`` pairs with random numbers (some missing, some failed), and the same rows."""
    rng = np.random.default_rng(seed)
    store = open_store(path, {"methods": METHODS, "faithfulness": faith})
    rows = []
    for start in range(0, n, 500):
        part = PartResult()
        for i in range(start, min(n, start + 500)):
            same = bool(rng.random() < 0.5)
            r = empty_row(PairTask(i, f"p{i % 97}/a{i}.jpg", f"p{i % 89}/b{i}.jpg", same), METHODS, faith)
            if rng.random() < 0.03:
                r["error"] = f"b{i}.jpg: no face found"
            else:
                sim = float(np.round(rng.normal(0.6 if same else 0.1, 0.2), 2))  # rounded: ties, kept in pair order
                r.update(similarity=sim, threshold=0.36, decision="same" if sim >= 0.36 else "different",
                         c_score=None if rng.random() < 0.1 else float(rng.random()), runtime_s=float(rng.random()))  # fmt: skip
                r["correct"] = r["decision"] == r["label"]
                r["runtime_xmap3"], r["runtime_cam"] = float(rng.random()), None if rng.random() < 0.2 else float(rng.random())
                if faith:
                    for m in (*METHODS, "random"):
                        r[f"faith_{m}_deletion_auc"] = float(rng.normal(0.3 if m != "random" else 0.4, 0.1))
                        r[f"faith_{m}_insertion_auc"] = float(rng.normal(0.5, 0.1))
            part.pairs.append(r)
            rows.append(BatchRow(i, r["file_x"], r["file_y"], r["label"], r["similarity"], r["threshold"], r["decision"], r["correct"],
                                 r["c_score"], r["runtime_s"], {m: v for m in METHODS if (v := r[f"runtime_{m}"]) is not None},
                                 r["error"]))  # fmt: skip
        store.write(part)
    store.close(True)
    return rows


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("synthetic") / "store"
    return path, _synthetic(path, 3000, faith=True)


@pytest.mark.parametrize(
    ("filters", "sort", "descending"),
    [({}, "index", False), ({"decision": "same"}, "similarity", True), ({"correct": False, "min_cscore": 0.5}, "c_score", False),
     ({"text": "P7/"}, "cam", True), ({"error": True}, "index", True), ({"correct": True}, "runtime_s", False)],
)  # fmt: skip
def test_duckdb_pages_equal_the_in_memory_table(synthetic, filters, sort, descending):
    path, rows = synthetic
    want = sort_rows(filter_rows(rows, **filters), sort, descending)
    q = StoreQuery(path)
    try:
        for page in (0, 3):
            got = q.page(**filters, sort=sort, descending=descending, page=page, page_size=40)
            assert got.n_total == 3000 and got.n_filtered == len(want)
            assert [r.index for r in got.rows] == [r.index for r in want[page * 40 : (page + 1) * 40]]
        assert got.rows == want[120:160] or not want[120:160]  # whole rows, not only their order
    finally:
        q.close()
    with pytest.raises(DataError, match="cannot sort"):
        StoreQuery(path).page(sort="no_such_column")


def test_the_summary_of_a_store(synthetic):
    path, rows = synthetic
    s = store_summary(path)
    done = [r for r in rows if r.ok]
    assert s["n_pairs"] == 3000 and s["n_compared"] == len(done)
    assert s["accuracy"] == pytest.approx(np.mean([r.correct for r in done]))
    assert s["eer"] == pytest.approx(eer(np.array([r.similarity for r in done]), np.array([r.label == "same" for r in done])))
    cs = [r.c_score for r in done if r.c_score is not None]
    assert s["c_score"]["median"] == pytest.approx(np.median(cs))
    t = read_table(path, "pairs").to_pylist()
    d = np.array([r["faith_cam_deletion_auc"] - r["faith_random_deletion_auc"] for r in t if r["error"] is None])
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=d.std(ddof=1) / math.sqrt(len(d)))
    f = s["faithfulness"]["cam"]
    assert f["deletion_auc_minus_random"] == pytest.approx(d.mean()) and f["deletion_auc_ci95"] == pytest.approx([lo, hi])
    assert hi < 0  # the synthetic maps were drawn 0.1 below the random map's deletion area
