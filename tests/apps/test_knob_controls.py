"""The page's advanced settings come from the explainers' typed knobs."""

import pytest

from apps import handlers as H
from apps.knob_controls import knob_info, knob_label, knob_specs, knobs_from, parse_knob
from core.io import load_image

from ..conftest import MISC


def test_every_typed_knob_gets_one_control_with_its_range_and_help():
    specs = {s["name"]: s for s in knob_specs()}
    assert {"patch_sizes", "stride", "region_size", "grid_step", "steps", "fill", "agg_start", "competitors", "start_layer"} <= set(specs)
    assert "preset" not in specs  # the page's own menu
    sizes = specs["patch_sizes"]
    assert sizes["methods"][:3] == [f"X-Map {n} (occlusion, Knoche et al.)" for n in ("I", "II", "III")]
    assert knob_label(sizes) == "patch_sizes (X-Map I, X-Map II, X-Map III)"
    assert "default 7,14,28; allowed 1..112 each" in knob_info(sizes)
    from core.registry import describe_explainers

    seeded = [r["label"] for r in describe_explainers() if any(k["name"] == "seed" for k in r["knobs"])]
    assert specs["seed"]["methods"] == seeded and len(seeded) >= 8  # X-Maps, removal (and RISE) share one seed knob, shown once


def test_control_values_become_the_explainers_knobs():
    specs = {s["name"]: s for s in knob_specs()}
    assert parse_knob(specs["patch_sizes"], "7, 14") == (7, 14) and parse_knob(specs["patch_sizes"], "") is None
    assert parse_knob(specs["stride"], 9.0) == 9 and parse_knob(specs["edge_blur"], 1.5) == 1.5
    assert parse_knob(specs["fill"], "128") == 128.0 and parse_knob(specs["fill"], "grey") == "grey"
    assert parse_knob(specs["patch_sizes"], "a,b") == ("a", "b")  # passed on: the explainer names the knob in its message
    assert knobs_from({"stride": None, "agg_start": "", "steps": 4, "unknown": 3}) == {"steps": 4}


@pytest.mark.needs_data
def test_the_advanced_settings_reach_the_maps_and_a_bad_value_is_said_in_its_panel(runner):
    a, b = load_image(MISC / "obama.jpg"), load_image(MISC / "obama2.jpg")
    out = H.compare_faces(runner, a, b, ["xmap3"], "fast", deletion_scores=False, knobs=knobs_from({"patch_sizes": "28", "stride": 20}))
    exp = out["result"].explanations[0]
    assert exp.ok and list(exp.extras["params"]["patch_sizes"]) == [28] and exp.extras["params"]["stride"] == 20
    assert "forward passes" in H.cost_text(runner, ["xmap3"], "fast", {"patch_sizes": (28,), "stride": 20})
    bad = H.compare_faces(runner, a, b, ["xmap3"], "fast", deletion_scores=False, knobs=knobs_from({"patch_sizes": "0"}))
    assert bad["ok"] and "patch_sizes=(0,) is not allowed" in bad["panels"][0]["error"]
