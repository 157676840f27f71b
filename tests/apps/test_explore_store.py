"""The Explore tab over a results store (apps.explore_store): its summary, DuckDB pages, and a
stored pair's maps shown without recomputing."""

from __future__ import annotations

import pytest

from apps.explore import explore_view, open_explore
from apps.explore_store import store_table
from core.batch.engine import run_store

from ..conftest import DEEPFACE
from ..test_batch_store import _synthetic

pytestmark = pytest.mark.needs_data

PAIRS = "file_x,file_y,same\nimg5.jpg,img10.jpg,1\nimg5.jpg,img12.jpg,0\nimg5.jpg,missing.jpg,1\n"


@pytest.fixture(scope="module")
def store(runner, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explore_store")
    (tmp / "pairs.csv").write_text(PAIRS)
    return run_store(runner, tmp / "pairs.csv", tmp / "store", DEEPFACE, methods=["cam"], part_size=2).out


def test_a_store_opens_with_its_summary_and_first_page(store):
    out = open_explore(store)
    assert out["ok"] and out["store"] == str(store) and out["methods"] == ["cam"]
    assert "**3** pairs" in out["summary"] and "equal error rate" in out["summary"] and "results store" in out["summary"]
    assert out["table"]["indices"] == [0, 1, 2] and out["table"]["headers"][-1] == "cam (s)"
    wrong = store_table(store, correct=False)
    assert wrong["ok"] and wrong["table"]["indices"] == [] and wrong["message"] == "0 of 3 pairs shown."
    by_sim = store_table(store, sort_by="similarity", descending=True)
    sims = [r.similarity for r in by_sim["rows"]]
    assert sims[:2] == sorted(sims[:2], reverse=True) and sims[2] is None  # the failed pair last


def test_a_stored_pair_shows_its_maps_without_recomputing(store, runner, monkeypatch):
    monkeypatch.setattr(type(runner), "explain", lambda *a, **k: pytest.fail("recomputed"))
    view = explore_view(store, 0)
    assert view["ok"] and view["title"] == "Pair 0: img5.jpg vs img10.jpg" and "right" in view["message"]
    assert view["crop_a"].shape == (112, 112, 3) and len(view["gallery"]) == 1 and view["gallery"][0][0].ndim == 3
    assert view["panels"][0]["method"] == "cam" and view["panels"][0]["text"]
    failed = explore_view(store, 2)
    assert not failed["ok"] and "missing.jpg" in failed["message"]
    assert not explore_view(store, 99)["ok"]


def test_pages_of_a_large_store_are_clamped_and_counted(tmp_path):
    _synthetic(tmp_path / "big", 1200)
    last = store_table(tmp_path / "big", page=10**6)
    assert last["ok"] and last["page"] == last["pages"] - 1 == 23 and len(last["rows"]) == 1200 - 23 * 50
    assert "page 24 of 24" in last["message"]
    bad = store_table(tmp_path / "big", sort_by="nonsense")
    assert not bad["ok"] and "cannot sort" in bad["message"]
