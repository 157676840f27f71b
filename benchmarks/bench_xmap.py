"""X-Map speed: the full three-method, three-scale X-Map of one pair against the true floor
(the fastest plain forward of exactly the same images) and against Captum's ``Occlusion``,
in one process on the same model and device.

    python benchmarks/bench_xmap.py [--preset full|fast] [--device auto] [--repeats 1] [--no-captum] [--quick]

(a) ``core.explainers.occlusion.xmaps`` for methods 1, 2 and 3 of one pair (cache cleared):
    2 N occluded images, embedded once and shared by the three methods.
(b) the true floor (``benchmarks/floor.py``): the model alone on exactly the images (a)
    embedded (recorded from its calls), best over batch sizes 8-64, contiguous and
    channels-last layouts, under ``torch.inference_mode``.
(i) the same X-Map with incremental inference (``core.models.incremental``, Nakandala et al.
    2019: per occlusion only the windows the patch changes, layer by layer), its largest map
    difference to (a), and per patch size the incremental embeddings against the floor's best
    setting on that scale's images. (a) runs with ``incremental=False``.
(e) Captum ``Occlusion`` at equal passes: method 2 of each face at each scale (2 N + 6
    passes), ``perturbations_per_eval`` = our batch size.
(c) Captum ``Occlusion`` producing the same three maps at the same patch sizes and strides,
    with its default ``perturbations_per_eval=1``: method 2 with the cosine similarity to the
    other (unoccluded) face as the target, for each face; method 3 on the two faces stacked
    as one input with a window spanning both (co-located occlusions); method 1, which
    Captum cannot express alone, as the authors' code does it: the other face's occluded
    embeddings one image at a time, then Occlusion with the mean similarity to them.
(c') the same with ``perturbations_per_eval`` = our batch size, to separate what batching
    gives from what sharing the embeddings between methods gives.

``--quick`` leaves (c) and (c') out. Prints seconds, images per second, the ratios a/b (aim
<= 1.1), i/b (below 1 is faster than the floor), e/b and c/a, the
correlation between Captum's and our method-2 map at one scale (a correctness check: after
undoing Captum's per-pixel averaging over covering windows they should agree to ~1 away from
the right and bottom edges, which only we occlude), and the machine. Captum is a development dependency
(requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.bench_embed import machine  # noqa: E402
from benchmarks.floor import RecordInputs, bench_args, bench_setup, floor_run, true_floor  # noqa: E402
from core.explainers import occlusion, perturb  # noqa: E402


def timed(fn, sync) -> float:
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bench_args(ap, repeats=1)
    ap.add_argument("--preset", default="full", choices=sorted(occlusion.PRESETS))
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--no-captum", action="store_true")
    ap.add_argument("--quick", action="store_true", help="only Captum at equal passes, not its three-method maps")
    args = ap.parse_args()
    tuned, runner, pair, sync = bench_setup(args)
    emb = runner.embedder
    params = occlusion.XMapParams.from_knobs(preset=args.preset)
    size = emb.input_size
    patches, stride, _ = params.scaled(size)
    patches = [params.hidden_width(p, size) for p in patches]  # the pixels each patch hides (the authors' p + 1)
    n_img = 2 * sum(occlusion.n_occlusions(size, p, stride) for p in patches) + 2
    bs = args.batch_size or emb.batch_size
    print(f"{machine(emb.device)}; model {emb.name} ({size} px), batch {bs}, preset {args.preset}: "
          f"patches of {patches} px, stride {stride}, {n_img} forward passes per pair; allocator tuned: {tuned}")  # fmt: skip

    def run_a() -> None:
        perturb.clear_cache()
        occlusion.xmaps(pair, emb, (1, 2, 3), params, batch_size=bs, incremental=False)

    def run_i() -> dict:
        perturb.clear_cache()
        return occlusion.xmaps(pair, emb, (1, 2, 3), params, batch_size=bs, incremental=True)

    run_a()  # warm-up
    with RecordInputs(emb) as rec:
        run_a()
    images = rec.images()
    floor = true_floor(emb.module, images, sync)  # which setting is fastest
    run_b = floor_run(emb.module, images, floor)
    runs: dict[str, list[float]] = {"a": [], "b": [], "e": [], "i": []}
    captum = None if args.no_captum else captum_equal_passes(emb, pair, patches, stride, params, bs)
    for _ in range(args.repeats):  # interleaved: only runs taken side by side compare on a noisy machine
        runs["a"].append(timed(run_a, sync))
        runs["b"].append(timed(run_b, sync))
        runs["i"].append(timed(run_i, sync))
        if captum is not None:
            runs["e"].append(timed(captum, sync))
    ta, tb = min(runs["a"]), min(runs["b"])
    print(f"best of {args.repeats} interleaved runs each")
    print(f"(a) full X-Map, methods 1-3      {ta:8.2f} s  {n_img / ta:7.1f} img/s")
    print(f"(b) true floor, same {len(images)} images {tb:6.2f} s  {len(images) / tb:7.1f} img/s   a/b = {ta / tb:.2f}  (aim <= 1.1)"
          f"   best: batch {floor.batch_size}, {floor.layout}")  # fmt: skip
    ti = min(runs["i"])
    perturb.clear_cache()
    plain = occlusion.xmaps(pair, emb, (1, 2, 3), params, batch_size=bs, incremental=False)
    inc = run_i()
    diff = max(float(np.abs(inc[m]["maps"][f] - plain[m]["maps"][f]).max()) for m in (1, 2, 3) for f in (0, 1))
    print(f"(i) X-Map, incremental inference {ti:8.2f} s  {n_img / ti:7.1f} img/s   i/b = {ti / tb:.2f}  (below 1: faster than the floor)"
          f"   largest map difference to (a) {diff:.1e}")  # fmt: skip
    per_scale(emb, pair, params, patches, stride, bs, images, floor, sync)
    if args.no_captum:
        return

    from captum.attr import Occlusion

    xa, xb = emb.preprocess([pair.a.image]), emb.preprocess([pair.b.image])
    fill = perturb.Perturber(emb, pair.a.image, params.fill)._f  # the patch colour after preprocessing
    with torch.no_grad():
        ea, eb = F.normalize(emb.module(torch.cat([xa, xb])), dim=1)

    def embed(x: torch.Tensor) -> torch.Tensor:
        return F.normalize(emb.module(x), dim=1)

    def against(target: torch.Tensor):
        return lambda x: embed(x) @ target

    def captum_maps(per_eval: int) -> dict:
        out = {}
        for p in patches:
            win, st = (3, p, p), (3, stride, stride)

            def occ(fn, x: torch.Tensor, base: torch.Tensor = fill, win=win, st=st) -> torch.Tensor:
                return Occlusion(fn).attribute(x, sliding_window_shapes=win, strides=st, baselines=base, perturbations_per_eval=per_eval)

            # method 2: each face against the other, unoccluded
            m2a, m2b = occ(against(eb), xa), occ(against(ea), xb)
            # method 3: both faces stacked, one window over both (co-located occlusions)
            both = torch.stack([xa[0], xb[0]])[None]

            def sim_pair(x: torch.Tensor) -> torch.Tensor:
                e = embed(x.flatten(0, 1)).view(x.shape[0], 2, -1)
                return (e[:, 0] * e[:, 1]).sum(1)

            m3 = occ(sim_pair, both, torch.stack([fill[0], fill[0]])[None], (2, *win), (1, *st))
            # method 1: the other face's occluded embeddings (one image at a time, as the
            # authors' code), then the mean similarity to them as Captum's target
            masks = occlusion.occlusion_masks(size, p, stride)
            with torch.no_grad():
                fa = torch.cat([embed(xa * (1 - m) + fill * m) for m in masks[:, None, None]])
                fb = torch.cat([embed(xb * (1 - m) + fill * m) for m in masks[:, None, None]])
            m1a, m1b = occ(against(fb.mean(0)), xa), occ(against(fa.mean(0)), xb)
            out[p] = (m1a, m1b, m2a, m2b, m3)
        return out

    te = min(runs["e"])
    print(f"(e) Captum Occlusion, equal passes {te:6.2f} s  {n_img / te:7.1f} img/s   e/b = {te / tb:.2f}   a/e = {ta / te:.2f}")
    if args.quick:
        return
    with torch.no_grad():
        tc = timed(lambda: captum_maps(1), sync)
        res = {}
        tc2 = timed(lambda: res.update(captum_maps(bs)), sync)
    print(f"(c) Captum Occlusion, 3 methods  {tc:8.2f} s                      c/a = {tc / ta:.2f}")
    print(f"(c') same, perturbations_per_eval={bs:<3d}{tc2:6.2f} s                      c'/a = {tc2 / ta:.2f}")
    # correctness: Captum's method-2 map of face a against ours at the first scale
    p0 = patches[0]
    ours = occlusion.xmaps(pair, emb, (2,), params, batch_size=bs)
    st0 = occlusion.occlusion_sets(pair, emb, params, bs)[0]
    d1, _ = occlusion.select_distances(2, st0.f1, st0.f2, ea.cpu(), eb.cpu())
    raw = occlusion.similarity_map(d1, float(1 - ea @ eb), st0.masks)
    # Captum averages over the windows covering each pixel, eq. 9 sums and divides by N
    cover = st0.masks.sum(0).numpy()
    cap = res[p0][2][0].sum(0).cpu().numpy() * cover / st0.masks.shape[0]
    inner = (slice(p0, size - p0 - stride), slice(p0, size - p0 - stride))  # away from our extra edge positions
    r = np.corrcoef(raw[inner].ravel(), cap[inner].ravel())[0, 1]
    print(f"check: correlation of Captum's and our method-2 map (patch {p0}, interior) = {r:.4f}; "
          f"our normalised map range [{ours[2]['maps'][0].min():.2f}, {ours[2]['maps'][0].max():.2f}]")  # fmt: skip


def per_scale(emb, pair, params, patches: list[int], stride: int, bs: int, images: torch.Tensor, floor, sync) -> None:
    """Incremental inference against the floor's best setting on each scale's own images
    (``images`` as recorded: per scale face a then face b, the two references last)."""
    start = 0
    for p in patches:
        masks = occlusion.occlusion_masks(emb.input_size, p, stride, params.patch_shape)
        n = masks.shape[0]
        run_f = floor_run(emb.module, images[start : start + 2 * n], floor)
        start += 2 * n

        def run_inc(masks: torch.Tensor = masks) -> None:
            for face in pair:
                perturb.Perturber(emb, face.image, params.fill, params.seed, bs, incremental=True).embed(masks)

        tf, tinc = timed(run_f, sync), timed(run_inc, sync)
        print(f"    patch {p:3d} px: {2 * n:5d} images, floor {tf:6.2f} s, incremental {tinc:6.2f} s, ratio {tinc / tf:.2f}")


def captum_equal_passes(emb, pair, patches: list[int], stride: int, params, bs: int):
    """Captum ``Occlusion`` at equal passes: method 2 of each face at each scale (the cosine
    similarity to the other, unoccluded face), ``perturbations_per_eval`` = ``bs``."""
    from captum.attr import Occlusion

    xa, xb = emb.preprocess([pair.a.image]), emb.preprocess([pair.b.image])
    fill = perturb.Perturber(emb, pair.a.image, params.fill)._f
    with torch.no_grad():
        ea, eb = F.normalize(emb.module(torch.cat([xa, xb])), dim=1)

    @torch.no_grad()
    def run() -> None:
        for p in patches:
            for x, other in ((xa, eb), (xb, ea)):
                Occlusion(lambda t, o=other: F.normalize(emb.module(t), dim=1) @ o).attribute(
                    x, sliding_window_shapes=(3, p, p), strides=(3, stride, stride), baselines=fill, perturbations_per_eval=bs
                )

    return run


if __name__ == "__main__":
    main()
