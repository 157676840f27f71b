"""Typed knobs: each explainer setting carries its range and help, checked in one place."""

import pytest

from core.errors import InvalidParameterError
from core.explainers.knobs import describe_knobs
from core.explainers.minplus import RemovalParams
from core.explainers.occlusion import XMapParams


@pytest.mark.parametrize(
    ("cls", "knobs", "said"),
    [
        (XMapParams, {"patch_sizes": (7, 0)}, "patch_sizes=(7, 0) is not allowed: each value of patch_sizes must be 1 to 112"),
        (XMapParams, {"stride": 0}, "stride=0 is not allowed: stride must be 1 to 112"),
        (XMapParams, {"patch_shape": "star"}, "patch_shape='star' is not allowed: patch_shape must be one of 'rect', 'round'"),
        (XMapParams, {"edge_blur": -1.0}, "edge_blur=-1.0 is not allowed: edge_blur must be 0 to 112"),
        (XMapParams, {"preset": "turbo"}, "preset='turbo' is not allowed: preset must be one of 'full', 'fast'"),
        (RemovalParams, {"grid_step": 256}, "grid_step=256 is not allowed: grid_step must be 1 to 255"),
        (RemovalParams, {"region_size": 1}, "region_size=1 is not allowed: region_size must be at least 2"),
        (RemovalParams, {"agg_start": "white"}, "agg_start='white' is not allowed: agg_start must be one of 'noise', 'fill'"),
        (RemovalParams, {"fill": "mauve"}, "unknown fill 'mauve'"),
        (XMapParams, {"fill": "mauve"}, "unknown fill 'mauve'"),
    ],
)
def test_a_knob_out_of_range_names_itself_its_value_and_what_is_allowed(cls, knobs, said):
    with pytest.raises(InvalidParameterError) as err:
        cls.from_knobs(**knobs)
    assert said in str(err.value) and isinstance(err.value, ValueError)


def test_valid_knobs_and_presets_pass_and_keep_their_values():
    p = XMapParams.from_knobs(preset="fast", stride=3, patch_shape="round")
    assert p.patch_sizes == (21,) and p.stride == 3 and p.patch_shape == "round" and p.preset == "fast"
    r = RemovalParams.from_knobs(preset="fast", fill=128.0, agg_start="fill")
    assert (r.region_size, r.grid_step, r.steps, r.fill, r.agg_start) == (181, 36, 3, 128.0, "fill")


def test_every_method_that_hides_pixels_calls_its_hiding_value_fill_with_one_help():
    from core.registry import knob_table

    fill = knob_table()["fill"]
    assert {"xmap1", "single_removal", "rise", "vit_lrp"} <= set(fill["methods"])
    assert not set(knob_table()) & {"patch_fill", "hide"}  # one idea, one name
    from core.registry import describe_explainers

    helps = {k["help"] for row in describe_explainers() for k in row["knobs"] if k["name"] == "fill"}
    assert helps == {fill["help"]}


def test_the_hiding_value_s_old_names_are_still_read():
    from core.explainers.knobs import canonical_knobs

    assert canonical_knobs({"patch_fill": "grey", "stride": 3}) == {"fill": "grey", "stride": 3}
    assert canonical_knobs({"hide": 128.0, "agg_start": "hide"}) == {"fill": 128.0, "agg_start": "fill"}
    assert canonical_knobs({"hide": "white", "fill": "grey"}) == {"fill": "grey"}  # today's name wins
    assert XMapParams.from_knobs(patch_fill="white").fill == "white"
    old = RemovalParams.from_knobs(hide=64.0, agg_start="hide")
    assert (old.fill, old.agg_start, old.start_fill()) == (64.0, "fill", 64.0)


def test_the_knobs_describe_themselves_with_type_default_range_and_help():
    rows = {r["name"]: r for r in describe_knobs(XMapParams)}
    assert rows["patch_sizes"]["default"] == [7, 14, 28] and rows["patch_sizes"]["low"] == 1 and rows["patch_sizes"]["high"] == 112
    assert rows["patch_geometry"]["choices"] == ["authors", "exact"] and "cv2.rectangle" in rows["patch_geometry"]["help"]
    assert all(r["help"] for r in rows.values()) and "tuple[int, ...]" in rows["patch_sizes"]["type"]
    removal = {r["name"] for r in describe_knobs(RemovalParams)}
    assert {"region_size", "grid_step", "steps", "fill", "agg_start", "seed", "preset"} <= removal


def test_the_words_knobs_are_typed_and_checked_too():
    from core.explainers.concepts import ConceptParams
    from core.explainers.geometry import GeometryParams
    from core.explainers.knobs import params_from

    assert params_from(GeometryParams, {"landmarks": "5", "top": 3}).landmarks == "5"
    assert params_from(ConceptParams, {"top": 3}).top == 3
    with pytest.raises(InvalidParameterError, match="landmarks='106' is not allowed: landmarks must be one of 'auto', '68', '5'"):
        params_from(GeometryParams, {"landmarks": "106"})
    with pytest.raises(InvalidParameterError, match="top=0 is not allowed: top must be 1 to 50"):
        params_from(ConceptParams, {"top": 0})


def test_sdd_and_vit_knobs_are_typed_and_checked_too():
    from core.explainers.knobs import params_from
    from core.explainers.sdd import SDDParams
    from core.explainers.vit_verification import ViTParams

    assert params_from(SDDParams, {"competitors": 3, "patch_sizes": (7,), "sdd_mode": None}) == SDDParams(competitors=3)  # others ignored
    with pytest.raises(InvalidParameterError, match="competitors=0 is not allowed: competitors must be at least 1"):
        params_from(SDDParams, {"competitors": 0})
    with pytest.raises(InvalidParameterError, match="sdd_mode='both' is not allowed"):
        params_from(SDDParams, {"sdd_mode": "both"})
    assert params_from(ViTParams, {"start_layer": 1}).start_layer == 1
    with pytest.raises(InvalidParameterError, match="masking='best' is not allowed: masking must be one of 'select', 'oim', 'um', 'nium'"):
        params_from(ViTParams, {"masking": "best"})
    with pytest.raises(InvalidParameterError, match="start_layer=-1 is not allowed"):
        params_from(ViTParams, {"start_layer": -1})


def test_presets_are_named_instances_of_the_knob_dataclasses():
    """A preset is a value of the method's own dataclass (so it is checked like any call's
    knobs), the ``preset`` knob offers exactly the presets there are, and a knob given on top
    of a preset replaces that one value only."""
    from dataclasses import fields

    from core.explainers import minplus, occlusion
    from core.explainers.knobs import check_knobs

    for cls, presets in ((XMapParams, occlusion.PRESETS), (RemovalParams, minplus.PRESETS)):
        choices = next(f.metadata["knob"]["choices"] for f in fields(cls) if f.name == "preset")
        assert tuple(presets) == choices
        for name, p in presets.items():
            assert type(p) is cls and p.preset == name
            check_knobs(p)
    fast = XMapParams.from_knobs(preset="fast", stride=7)
    assert (fast.patch_sizes, fast.stride, fast.preset) == (occlusion.PRESETS["fast"].patch_sizes, 7, "fast")
    assert RemovalParams.from_knobs(preset="fast") == minplus.PRESETS["fast"]
