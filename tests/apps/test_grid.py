"""The comparison page's grid, viewer and legend (apps.grid), without a browser."""

from __future__ import annotations

import numpy as np
import pytest

from apps.grid import CELL, VIEW, cell_method, cost_caption, faithfulness_badge, grid_columns, grid_items, legend_html, viewer
from core.types import Explanation

from ..conftest import MISC


@pytest.fixture(scope="module")
def compared(runner):
    if not MISC.is_dir():
        pytest.skip(f"real test images not found at {MISC}")
    res = runner.explain(MISC / "obama.jpg", MISC / "obama2.jpg", methods=["xmap3", "cam", "grad_cam", "geometry"], preset="fast")
    return res, runner.faithfulness(res)


@pytest.mark.needs_data
def test_the_grid_has_one_column_per_method_and_a_row_per_face(compared):
    res, faith = compared
    cells = grid_items(res, faith)
    assert grid_columns(res) == 3 and len(cells) == 6  # the words-only geometry takes no cell
    assert all(img.shape == (CELL, CELL, 3) and img.dtype == np.uint8 for img, _ in cells)
    captions = [c for _, c in cells]
    assert captions[0].startswith("X-Map III (occlusion, Knoche et al.), face A") and ", face B" in captions[3]
    assert all(" s" in c and "than random" in c for c in captions) and "forward passes" in captions[0]
    assert [cell_method(res, i) for i in range(6)] == ["xmap3", "cam", "grad_cam"] * 2 and cell_method(res, 6) is None


@pytest.mark.needs_data
def test_the_viewer_shows_both_whole_maps_large_on_one_scale(compared):
    res, _ = compared
    v = viewer(res, "cam", opacity=1.0)
    assert v["ok"] and v["image"].shape == (VIEW, 2 * VIEW + 8, 3)  # both faces, whole, side by side
    assert v["raw"].shape == (VIEW // 2, VIEW + 8, 3) and v["bar"].shape[1] == VIEW and "CAM" in v["title"]
    photo_only = viewer(res, "cam", opacity=0.0)["image"]
    assert not np.array_equal(photo_only, v["image"])
    assert not viewer(res, "nope")["ok"]


def test_the_legend_names_each_scale_used_and_each_methods_colours():
    both = legend_html(["xmap3", "grad_cam", "geometry"])
    assert "green - grey - red" in both and "dark - bright" in both and "linear-gradient" in both
    assert "hiding the region makes the faces less alike" in both  # the registry's words for X-Maps
    assert "dark - bright" not in legend_html(["cam"]) and legend_html(["geometry"]) == ""


def test_a_cached_map_names_the_method_that_computed_it():
    e = Explanation("xmap3", "X-Map III", maps=[], scores={"forward_passes": 0.0}, runtime_s=0.01,
                    extras={"cached_from": {"method": "xmap1", "label": "X-Map I", "forward_passes": 2500, "runtime_s": 61.2}})  # fmt: skip
    assert cost_caption(e).startswith("from the cache of X-Map I") and "2500 forward passes" in cost_caption(e)
    fresh = Explanation("cam", "CAM", maps=[], scores={"forward_passes": 2.0}, runtime_s=0.25)
    assert cost_caption(fresh).startswith("2 forward passes")
    assert faithfulness_badge({"deletion_auc": 0.1}, {"deletion_auc": 0.2}) == "better than random"
    assert faithfulness_badge({"deletion_auc": 0.3}, {"deletion_auc": 0.2}) == "not better than random"
    assert faithfulness_badge(None, {"deletion_auc": 0.2}) == ""


def test_the_gradio_grid_pads_few_methods_to_four_columns_and_a_blank_cell_opens_nothing():
    from apps.grid import MIN_COLUMNS, gallery_columns, gallery_items, gallery_method

    class E:  # one method with maps: its column must not span the page
        def __init__(self, method):
            self.method, self.label, self.ok, self.signed, self.extras, self.scores, self.runtime_s = method, method, True, True, {}, {}, 0.1
            self.maps = [np.zeros((7, 7), np.float32), np.ones((7, 7), np.float32)]

    class F:
        image = np.zeros((112, 112, 3), np.uint8)

    from types import SimpleNamespace

    res = SimpleNamespace(explanations=[E("xmap3")], pair=(F(), F()))
    cells = gallery_items(res)
    assert gallery_columns(res) == MIN_COLUMNS == 4 and len(cells) == 8
    assert [c[1] == "" for c in cells] == [False, True, True, True, False, True, True, True]  # face A's row, then face B's
    assert [gallery_method(res, i) for i in range(8)] == ["xmap3", None, None, None, "xmap3", None, None, None]
    assert gallery_method(res, 8) is None and gallery_method(res, None) is None
