"""One contract over every registered explainer, each on a tiny model that offers what it
requires (``MODEL_FOR``): shapes and ranges, batch size never changes a result, nothing
(hook, pre-hook, patched ``forward``, grad mode) is left behind, the class's metadata is the
registry's, the forward passes run equal the registry's cost, and the toy-region behaviour:
on a model whose similarity depends on one known square only, the map ranks that square
above one that does not matter.

The tests are parametrized over ``explainer_names()``, so a newly registered explainer is
picked up with no change here; one whose ``requires`` has no tiny model in ``MODEL_FOR``
fails loudly (it is not skipped)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.modules.module as torch_module_globals
from torch import nn

from core.explainers import perturb
from core.models.base import TorchEmbedder
from core.registry import describe_explainers, explainer_names, explainer_spec, forward_passes
from core.runner import model_capabilities
from core.types import AlignedFace, Explainer, FacePair

from .conftest import RegionEmbedder, toy_face

NAMES = explainer_names()
# what the Runner would pass every method: coarse occlusion and removal grids, and geometry's 5 landmarks (no dlib)
KNOBS = {"patch_sizes": (28,), "stride": 20, "region_size": 128, "grid_step": 48, "steps": 2, "landmarks": "5"}
BATCH_SIZES = (1, 64)  # one face at a time, and every perturbation of a face in one batch
#: methods whose registered cost is an upper bound, not the exact count: greedy searches stop
#: early; the ViT heatmaps embed both faces under 2 candidate masks for a match, 3 for a non-match (the cost's)
UPPER_BOUND = {"greedy_removal", "greedy_aggregation", "minplus_average", "vit_lrp", "vit_lrp_nograd", "vit_rollout"}
SCALE_SIGNED = {"diverging": True, "sequential": False}


# -- the tiny models ---------------------------------------------------------------------------
class Rows(nn.Module):
    """Identity that counts the images (rows) it sees: the model's forward passes, without a hook."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.n += int(x.shape[0])
        return x


class CountingRegionEmbedder(RegionEmbedder):
    """conftest's black-box toy (only the square 8:16 x 8:16 matters), counting the images it embeds."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.rows = 0

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        self.rows += int(batch.shape[0])
        return super().embed(batch)


class MaskedConv(nn.Module):
    """A bias-free stride-4 convolution whose 8 x 8 output is zero outside grid cells 2-3 x 2-3 (pixels 8:16)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.rows = Rows()
        self.conv = nn.Conv2d(3, channels, 4, stride=4, bias=False)
        mask = torch.zeros(1, 1, 8, 8)
        mask[..., 2:4, 2:4] = 1
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.rows(x)) * self.mask


class RegionCNN(nn.Module):
    """A differentiable toy whose embedding depends on the square 8:16 x 8:16 only: linear in
    the centred image, its feature map is zero elsewhere (so are its activations, gradients
    times activations and CAM shares there); then global average pooling and a bias-free
    linear layer (an affine head, as CAM needs, with no constant spread over the map).

    Why every map-giving gradient method must rank the square first here: Grad-CAM's map
    before its ReLU sums to zero over the square (with a pooled head its channel weights are
    the gradient of a cosine, which is orthogonal to the embedding), so it is positive
    somewhere in it and zero outside; CAM is exactly zero outside; and in 32 dimensions each
    location's share of a face's similarity to its own identity is positive, so SDD's
    target-against-competitors score is positive on average over the square and 0 outside,
    and its exponential map is larger there than at its neutral level outside (Jensen)."""

    def __init__(self, channels: int = 16, dim: int = 32, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.feat = MaskedConv(channels)
        self.fc = nn.Linear(channels, dim, bias=False)

    def head(self, a: torch.Tensor) -> torch.Tensor:
        return self.fc(a.mean((2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feat(x))


def _noisy(face: AlignedFace, amplitude: int, seed: int) -> AlignedFace:
    """Another photo of the same toy identity: the crop plus uniform noise."""
    rng = np.random.default_rng(seed)
    img = np.clip(face.image.astype(int) + rng.integers(-amplitude, amplitude + 1, face.image.shape), 0, 255).astype(np.uint8)
    return replace(face, image=img)


def _square(size: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[r0:r1, c0:c1] = True
    return m


@dataclass
class Tiny:
    """A tiny model for the contract: the pair it explains, the knobs the Runner would add, the
    images it has embedded so far and, where it has one, the square its similarity depends on
    (``matters``) and one it ignores (``ignored``)."""

    embedder: Any
    pair: FacePair
    size: int
    counted: Callable[[], int]
    knobs: dict[str, Any] = field(default_factory=dict)
    matters: np.ndarray | None = None
    ignored: np.ndarray | None = None

    @property
    def module(self) -> nn.Module | None:
        return getattr(self.embedder, "module", None)


def no_model(bs: int) -> Tiny:
    """For methods that require nothing of a model: the Runner passes None (``explain_without_model``)."""
    from .test_cam import random_pair

    return Tiny(None, random_pair(3), 32, lambda: 0)


def region_blackbox(bs: int) -> Tiny:
    emb = CountingRegionEmbedder(size=32, region=(8, 16, 8, 16), batch_size=bs)
    pair = FacePair(toy_face(), toy_face(value=250))  # nearly the same face, not the same bytes
    return Tiny(emb, pair, 32, lambda: emb.rows, matters=_square(32, 8, 16, 8, 16), ignored=_square(32, 24, 32, 24, 32))


def region_cnn(bs: int, seed: int = 0) -> Tiny:
    """``RegionCNN`` on a genuine pair (a random crop and a noisy copy, cosine about 0.95) with
    a gallery of that identity (two more noisy copies: SDD identification's target) and four
    random identities (SDD's competitors)."""
    from core.gallery import Gallery

    from .test_cam import random_pair

    net = RegionCNN(seed=seed).eval()
    emb = TorchEmbedder("region_cnn", net, 32, net.fc.out_features, mean=(127.5,) * 3, std=(64.0,) * 3, device="cpu",
                        feature_layer="feat", head=net.head, batch_size=bs)  # fmt: skip
    a = random_pair(3).a
    photos = [_noisy(a, 40, 10), _noisy(a, 40, 11)] + [random_pair(100 + k).a for k in range(8)]
    ids = ["self", "self"] + [f"id{k // 2}" for k in range(8)]
    with torch.no_grad():
        e = emb.embed(emb.preprocess([p.image for p in photos])).numpy().astype(np.float32)
    knobs = {"gallery": Gallery([f"f{k}.png" for k in range(len(ids))], ids, e, "toy", emb.name, []), "decision_threshold": 0.5,
             "competitors": 2}  # fmt: skip
    net.feat.rows.n = 0  # the gallery is not the method's cost
    return Tiny(emb, FacePair(a, _noisy(a, 40, 1)), 32, lambda: net.feat.rows.n, knobs, _square(32, 8, 16, 8, 16), _square(32, 24, 32, 24, 32))


FOCUS = [5, 6, 10]  # the patches (of a 4 x 4 grid of 8 px patches) the focused ViT's output depends on


def tiny_vit(bs: int) -> Tiny:
    """test_vit_lrp's focused timm ViT (its output depends on the ``FOCUS`` patches only, and
    its attention maps put their mass there: test_the_map_puts_its_mass_on_the_patches_...)."""
    from .test_vit_lrp import focused_vit
    from .test_vit_verification import random_faces

    vit = focused_vit(FOCUS)
    rows = Rows()
    assert isinstance(vit.patch_embed.norm, nn.Identity)
    vit.patch_embed.norm = rows  # counts the images without a hook
    emb = TorchEmbedder("tiny_vit", vit, 32, 32, mean=(127.5,) * 3, std=(64.0,) * 3, device="cpu", batch_size=bs)
    grid = np.isin(np.arange(16), FOCUS).reshape(4, 4)
    matters = grid.repeat(8, 0).repeat(8, 1)
    return Tiny(emb, random_faces(3), 32, lambda: rows.n, {"decision_threshold": -1.0}, matters, ~matters)


def colour_cbm(bs: int) -> Tiny:
    """test_concepts' concept bottleneck over a colour 'tower' (its words are known)."""
    from .test_concepts import colour_embedder, face

    emb = colour_embedder()
    rows = Rows()
    emb.module.visual = nn.Sequential(rows, emb.module.visual)
    emb.batch_size = bs
    return Tiny(emb, FacePair(face((220, 20, 10)), face((200, 30, 20))), 16, lambda: rows.n, {"decision_threshold": 0.5})


#: what each ``requires`` set of the registry runs on; a new set needs a tiny model here
MODEL_FOR: dict[frozenset[str], Callable[[int], Tiny]] = {
    frozenset(): no_model,
    frozenset({"blackbox"}): region_blackbox,
    frozenset({"gradients"}): region_cnn,
    frozenset({"vit"}): tiny_vit,
    frozenset({"vit", "gradients"}): tiny_vit,
    frozenset({"clip_text"}): colour_cbm,
}


def tiny_for(name: str, bs: int) -> Tiny:
    requires = explainer_spec(name).requires
    if requires not in MODEL_FOR:
        pytest.fail(f"no tiny model offers {sorted(requires)} for {name!r}: add one to MODEL_FOR in {__file__}")
    return MODEL_FOR[requires](bs)


# -- one explanation, and what it left behind ----------------------------------------------------
_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks", "_global_backward_pre_hooks",
                 "_global_module_registration_hooks", "_global_parameter_registration_hooks", "_global_buffer_registration_hooks")  # fmt: skip


def instrumentation(module: nn.Module | None) -> dict[str, Any]:
    """Everything an explainer could leave on a model or in torch: each module's hooks and
    instance ``forward`` (by identity), the module tree, training and requires_grad flags,
    torch's global module hooks and grad mode."""
    mods = dict(module.named_modules()) if module is not None else {}
    return {
        "hooks": {f"{p or '<model>'}.{h}": len(getattr(m, h, {})) for p, m in mods.items() for h in _HOOKS if getattr(m, h, None)},
        "forward": {p or "<model>": id(m.__dict__["forward"]) for p, m in mods.items() if "forward" in m.__dict__},
        "tree": [(p, type(m).__name__) for p, m in mods.items()],
        "training": {p: m.training for p, m in mods.items()},
        "requires_grad": {p: t.requires_grad for p, t in module.named_parameters()} if module is not None else {},
        "global_hooks": {h: list(getattr(torch_module_globals, h, {})) for h in _GLOBAL_HOOKS},
        "grad_enabled": torch.is_grad_enabled(),
    }


@dataclass
class Run:
    tiny: Tiny
    exp: Any
    counted: int
    before: dict[str, Any]
    after_explain: dict[str, Any]
    after_close: dict[str, Any]


@cache
def run(name: str, bs: int, repeat: int = 0) -> Run:
    """``name`` on a fresh tiny model with batch size ``bs``, from a cold cache (memoised:
    the checks below share the runs)."""
    spec = explainer_spec(name)
    tiny = tiny_for(name, bs)
    perturb.clear_cache()
    before = instrumentation(tiny.module)
    start = tiny.counted()
    ex = spec.factory()
    try:
        exp = ex.explain(tiny.pair, tiny.embedder, **KNOBS, **tiny.knobs, batch_size=bs)
        after_explain = instrumentation(tiny.module)
    finally:
        ex.close()
    return Run(tiny, exp, tiny.counted() - start, before, after_explain, instrumentation(tiny.module))


# -- the registry ------------------------------------------------------------------------------
def test_the_families_are_registered():
    blackbox = {n for n in NAMES if explainer_spec(n).requires == {"blackbox"}}
    assert blackbox >= {"xmap1", "xmap2", "xmap3", "single_removal", "greedy_removal", "single_aggregation", "greedy_aggregation",
                        "minplus_average"}  # fmt: skip
    assert {n for n in NAMES if "gradients" in explainer_spec(n).requires and "vit" not in explainer_spec(n).requires} >= {
        "cam", "grad_cam", "grad_cam_pp", "sdd", "sdd_identification"}  # fmt: skip
    assert {n for n in NAMES if "vit" in explainer_spec(n).requires} == {"vit_lrp", "vit_lrp_nograd", "vit_rollout"}
    assert {n for n in NAMES if not explainer_spec(n).gives_maps} >= {"concepts", "geometry"}
    assert set(NAMES) >= UPPER_BOUND  # no stale names


def test_every_registered_explainer_has_a_tiny_model():
    """Each ``requires`` set maps to a tiny model that really offers it (as the Runner sees it)."""
    missing = {n: sorted(explainer_spec(n).requires) for n in NAMES if explainer_spec(n).requires not in MODEL_FOR}
    assert not missing, f"no tiny model in MODEL_FOR for: {missing}"
    for requires, build in MODEL_FOR.items():
        tiny = build(2)
        if tiny.embedder is None:
            assert not requires, f"{build.__name__} has no model, so it cannot offer {sorted(requires)}"
        else:
            assert model_capabilities(tiny.embedder) >= requires, (build.__name__, sorted(model_capabilities(tiny.embedder)))


@pytest.mark.parametrize("name", NAMES)
def test_class_metadata_equals_the_registry(name):
    spec = explainer_spec(name)
    ex = spec.factory()
    assert isinstance(ex, Explainer)
    differs = {k: (got, want) for k, got, want in (("name", ex.name, name), ("label", ex.label, spec.label),
                                                   ("requires", ex.requires, spec.requires)) if got != want}  # fmt: skip
    assert not differs, f"{name}: the class says (class, registry) {differs}"
    # the registry holds what the class's @explainer wrote, not a copy kept elsewhere
    assert type(ex).spec is spec and spec.factory is type(ex)
    assert spec.name == name and spec.family and spec.description
    if spec.gives_maps:
        assert spec.scale in SCALE_SIGNED and spec.colours, (spec.scale, spec.colours)
    else:
        assert spec.scale == ""
    if spec.knobs is not None:
        from dataclasses import is_dataclass

        assert is_dataclass(spec.knobs)
    row = _described()[name]  # what the CLI, the page and the README show
    assert (row["label"], set(row["requires"]), row["gives_maps"], row["scale"]) == (spec.label, spec.requires, spec.gives_maps, spec.scale)


@cache
def _described() -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in describe_explainers(32)}


# -- the contract ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_ranges(name):
    spec = explainer_spec(name)
    r = run(name, BATCH_SIZES[-1])
    exp, size = r.exp, r.tiny.size
    assert exp.ok, exp.error
    assert exp.method == name
    assert exp.label == spec.label, f"{name}: the explanation's label {exp.label!r} is not the registry's {spec.label!r}"
    if not spec.gives_maps:  # words only
        assert not exp.maps and exp.text and all(isinstance(t, str) and t for t in exp.text)
        return
    assert exp.signed is SCALE_SIGNED[spec.scale], f"{name}: signed={exp.signed} but the registry's scale is {spec.scale!r}"
    assert len(exp.maps) == 2  # one per face
    for m in exp.maps:
        assert isinstance(m, np.ndarray) and m.shape == (size, size) and m.dtype == np.float32 and np.isfinite(m).all()
        assert np.abs(m).max() > 0  # no toy gives a blank map (see RegionCNN)
        if not exp.signed:  # sequential maps: relevance in [0, 1]
            assert m.min() >= 0 and m.max() <= 1 + 1e-6, (float(m.min()), float(m.max()))


@pytest.mark.parametrize("name", NAMES)
def test_batch_size_never_changes_a_result(name):
    one, many, again = run(name, 1), run(name, BATCH_SIZES[-1]), run(name, BATCH_SIZES[-1], repeat=1)
    assert one.exp.ok and many.exp.ok, (one.exp.error, many.exp.error)
    assert len(one.exp.maps) == len(many.exp.maps)
    for x, y in zip(one.exp.maps, many.exp.maps, strict=True):  # batching is a cost knob only
        np.testing.assert_allclose(x, y, atol=1e-5)
    for x, y in zip(many.exp.maps, again.exp.maps, strict=True):  # and a rerun from a cold cache is the same
        np.testing.assert_array_equal(x, y)
    if not explainer_spec(name).gives_maps:
        assert one.exp.text == many.exp.text == again.exp.text


@pytest.mark.parametrize("name", NAMES)
def test_nothing_is_left_behind(name):
    for bs in BATCH_SIZES:
        r = run(name, bs)
        assert r.exp.ok, r.exp.error
        assert not r.before["hooks"] and not r.before["forward"]  # the toys start clean
        for when, state in (("explain", r.after_explain), ("close", r.after_close)):
            assert not state["hooks"], f"{name} left hooks after {when}: {state['hooks']}"
            assert not state["forward"], f"{name} left a patched forward after {when}: {sorted(state['forward'])}"
            for key in ("tree", "training", "requires_grad", "global_hooks", "grad_enabled"):
                assert state[key] == r.before[key], f"{name} changed {key} by {when}"


@pytest.mark.parametrize("name", NAMES)
def test_forward_passes_match_the_cost(name):
    """From a cold cache, the images the model embedded (counted inside the model) are the
    registry's cost for the same knobs (at most it, for greedy searches and ViT masks); a
    method that counts its passes (``scores["forward_passes"]``) counts those."""
    r = run(name, BATCH_SIZES[-1])
    assert r.exp.ok, r.exp.error
    knobs = {**KNOBS, **r.tiny.knobs, "batch_size": BATCH_SIZES[-1]}
    cost = forward_passes([name], r.tiny.size, **knobs)[name]
    if "forward_passes" in r.exp.scores:
        assert r.exp.scores["forward_passes"] == r.counted, f"{name} reports {r.exp.scores['forward_passes']} passes, ran {r.counted}"
    if name in UPPER_BOUND:
        assert 0 < r.counted <= cost, (r.counted, cost)
    else:
        assert r.counted == cost, f"{name} ran {r.counted} forward passes, the registry's cost says {cost}"
    assert run(name, 1).counted == r.counted  # the batch size changes how, not how many


@pytest.mark.parametrize("name", [n for n in NAMES if explainer_spec(n).gives_maps])
def test_the_map_ranks_the_region_that_matters_first(name):
    """On each toy, hiding the ``matters`` square changes the embedding and hiding the
    ``ignored`` one does not (test_the_toys_depend_on_their_region_only): the map (its
    magnitude, for signed maps) is larger on the first, for both faces. Black-box methods run
    on conftest's region toy, gradient ones on ``RegionCNN``; the ViT heatmaps on the focused
    ViT of test_vit_lrp, whose attention maps put their mass on its patches (shown there),
    so the heatmap built from them must too."""
    r = run(name, BATCH_SIZES[-1])
    tiny = r.tiny
    assert tiny.matters is not None and tiny.ignored is not None, f"the tiny model of {name} has no known region"
    assert r.exp.ok, r.exp.error
    for i, m in enumerate(r.exp.maps):
        a = np.abs(m) if r.exp.signed else m
        inside, outside = float(a[tiny.matters].mean()), float(a[tiny.ignored].mean())
        assert inside > outside, f"{name}, face {i}: mean {inside:.4g} on the square that matters, {outside:.4g} on one that does not"


@pytest.mark.parametrize("build", list(dict.fromkeys(MODEL_FOR.values())), ids=lambda b: b.__name__)
def test_the_toys_depend_on_their_region_only(build):
    """Where the toy-region check is well founded: hiding ``ignored`` leaves the embedding (so
    the similarity) as it is, hiding ``matters`` changes it. A toy that serves map-giving
    methods needs both."""
    tiny = build(2)
    serves = [n for n in NAMES if MODEL_FOR.get(explainer_spec(n).requires) is build and explainer_spec(n).gives_maps]
    if tiny.matters is None or tiny.ignored is None:
        assert not serves, f"{build.__name__} gives {serves} no known region"
        return
    rng = np.random.default_rng(0)
    face = tiny.pair.a.image
    noise = rng.integers(0, 256, face.shape, dtype=np.uint8)

    def embed(mask: np.ndarray | None) -> torch.Tensor:
        x = face if mask is None else np.where(mask[..., None], noise, face)
        with torch.no_grad():
            return tiny.embedder.embed(tiny.embedder.preprocess([x]))[0].double()

    base = embed(None)
    moved, still = float((embed(tiny.matters) - base).norm()), float((embed(tiny.ignored) - base).norm())
    assert moved > 1e-6 and still <= 1e-4 * moved, (moved, still)  # relative: the focused ViT moves little in absolute terms


def test_cost_counts_shared_embeddings_once():
    cost = forward_passes(["xmap1", "xmap2", "xmap3", "single_removal", "minplus_average"], 112, preset="fast")
    assert cost["xmap1"] > 0 and cost["xmap2"] == 0 and cost["xmap3"] == 0
    # single removal needs one pass per region and face (6 x 6 regions at the fast preset) plus the two faces;
    # the average needs the rest of the family and does not pay for single removal again
    assert cost["single_removal"] == 2 * 36 + 2
    assert cost["single_removal"] + cost["minplus_average"] == forward_passes(["minplus_average"], 112, preset="fast")["total"]
    assert cost["total"] == cost["xmap1"] + cost["single_removal"] + cost["minplus_average"]
    full = forward_passes(["xmap3"], 112)
    assert full["xmap3"] == 2 * (22 * 22 + 21 * 21 + 18 * 18) + 2  # p = 7, 14, 28 (8, 15, 29 px hidden) with s = 5, edges included
    # at the full preset single removal costs a few hundred passes per face (15 x 15 regions), not the family's 18,006
    assert forward_passes(["single_removal"], 112, preset="full")["total"] == 2 * 225 + 2
