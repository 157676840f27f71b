"""RISE (Petsiuk et al. 2018): the masks are the paper's, and the map is eq. 6 (the mean of
the masks weighted by the score), so it is bright where showing the face keeps it like the other."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import InvalidParameterError
from core.explainers.rise import Rise, rise_masks
from core.registry import forward_passes


def test_masks_are_shifted_upsampled_grids_with_the_keep_probability():
    m = rise_masks(32, 4000, 4, 0.3, np.random.default_rng(0))
    assert m.shape == (4000, 32, 32) and m.dtype == torch.float32
    assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    assert abs(float(m.mean()) - 0.3) < 0.02  # E[M] = p (bilinear upsampling keeps the mean)
    assert len({tuple(np.round(x[::8, ::8].numpy(), 3).ravel()) for x in m[:50]}) == 50  # random, not one mask
    # smooth: neighbouring pixels differ by at most one cell's step over C = 8 pixels (bilinear)
    assert float((m[:, :, 1:] - m[:, :, :-1]).abs().max()) <= 1 / 8 + 1e-6
    np.testing.assert_array_equal(m, rise_masks(32, 4000, 4, 0.3, np.random.default_rng(0)))


def test_map_is_the_score_weighted_mean_of_the_shown_masks(toy, toy_pair):
    exp = Rise().explain(toy_pair, toy, masks=300, cells=4, seed=3)
    a = exp.maps[0]
    # recompute eq. 6 by hand for face a
    shown = rise_masks(32, 300, 4, 0.5, np.random.default_rng(3))
    hidden_img = torch.from_numpy(toy_pair.a.image).permute(2, 0, 1).float()[None] * shown[:, None]  # black fill: I . M
    e = toy.embed(hidden_img / 255)
    ref_b = toy.embed(toy.preprocess([toy_pair.b.image]))[0]
    want = torch.einsum("n,nhw->hw", (e @ ref_b).double(), shown.double()) / (0.5 * 300)
    want = want.numpy()
    assert (exp.scores["raw_min_a"], exp.scores["raw_max_a"]) == pytest.approx((want.min(), want.max()), rel=1e-4)
    np.testing.assert_allclose(a, (want - want.min()) / (want.max() - want.min()), atol=1e-4)  # shown in [0, 1]
    assert exp.scores["forward_passes"] == forward_passes(["rise"], 32, masks=300)["rise"] == 602


def test_ranks_the_region_that_matters_above_one_that_does_not(toy, toy_pair):
    """Only the square 8:16 x 8:16 changes the toy's similarity: hiding it (black) turns the
    embedding to [0, 1], far from the other face, so masks showing it score high."""
    a = Rise().explain(toy_pair, toy, masks=1000, cells=4).maps[0]
    assert a[8:16, 8:16].mean() > a[20:28, 20:28].mean() + 0.05


def test_a_bad_knob_names_what_is_allowed(toy, toy_pair):
    with pytest.raises(InvalidParameterError, match=r"keep=1\.5 is not allowed: keep must be 0\.01 to 1"):
        Rise().explain(toy_pair, toy, keep=1.5)


def test_the_fast_preset_is_fewer_masks_and_a_given_knob_beats_the_preset(toy, toy_pair):
    exp = Rise().explain(toy_pair, toy, preset="fast", cells=4)
    assert exp.extras["params"]["masks"] == 500 and exp.extras["params"]["preset"] == "fast"
    assert exp.scores["forward_passes"] == forward_passes(["rise"], 32, preset="fast")["rise"] == 1002
    assert Rise.params_of({"preset": "fast", "masks": 40}).masks == 40
    with pytest.raises(InvalidParameterError, match="preset='turbo' is not allowed"):
        Rise.params_of({"preset": "turbo"})
