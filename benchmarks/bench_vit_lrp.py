"""Time of one ViT attention map against one forward plus backward pass of the same model.

    python benchmarks/bench_vit_lrp.py [--arch ViT-B-16] [--device auto] [--batch 1] [--repeats 5]

The model is an open_clip image tower of the named architecture with random weights (the
pretrained ones cannot be downloaded here; the cost is the same). The baseline, in the same
process, is one forward and one backward pass of the cosine similarity to a target embedding
with respect to the input (what Grad-CAM-style methods pay; a second line adds the weight
gradients, a training step's backward, for reference). Then ViT-LRP (forward, gradients
of the attention probabilities, relevance propagation), No-Grad ViT-LRP (forward and
propagation) and rollout (forward), each through ``core.explainers.vit_lrp.attention_maps``.
Prints seconds per map (best of --repeats after a warm-up) and each method's ratio to the
baseline, and the machine.
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

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from core.device import resolve_device  # noqa: E402
from core.explainers.vit_lrp import METHODS, attention_maps, cosine_target, find_vit  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_embed import machine  # noqa: E402  (the same machine line in every benchmark)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="ViT-B-16", help="open_clip architecture, e.g. ViT-B-16, ViT-L-14 (default: %(default)s)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=1, help="images per map call")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import open_clip

    device = resolve_device(args.device)
    torch.manual_seed(0)
    visual = open_clip.create_model(args.arch, pretrained=None).visual.eval().to(device)
    for p in visual.parameters():
        p.requires_grad_(False)
    spec = find_vit(visual)
    size = spec.image_size[0]
    x = torch.randn(args.batch, 3, size, size, device=device)
    with torch.no_grad():
        target = F.normalize(visual(torch.randn_like(x)), dim=1)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def fwd_bwd() -> None:
        inp = x.detach().requires_grad_(True)
        score = F.cosine_similarity(visual(inp), target).sum()
        torch.autograd.grad(score, inp)

    def fwd_bwd_weights() -> None:  # a training step's backward: weight gradients too
        for p in visual.parameters():
            p.requires_grad_(True)
        try:
            inp = x.detach().requires_grad_(True)
            score = F.cosine_similarity(visual(inp), target).sum()
            torch.autograd.grad(score, [inp, *visual.parameters()])
        finally:
            for p in visual.parameters():
                p.requires_grad_(False)

    def timed(fn) -> float:
        fn()  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            best = min(best, time.perf_counter() - t)
        return best / args.batch

    print(f"{args.arch} ({len(spec.blocks)} blocks, grid {spec.grid}, {size} px), batch {args.batch}, {machine(device)}")
    base = timed(fwd_bwd)
    print(f"{'forward + backward (baseline)':<32} {base:8.3f} s/image   1.00x")
    t = timed(fwd_bwd_weights)
    print(f"{'forward + backward with weights':<32} {t:8.3f} s/image   {t / base:.2f}x")
    for m in METHODS:
        t = timed(lambda m=m: attention_maps(visual, x, m, cosine_target(target), spec=spec))
        print(f"{m:<32} {t:8.3f} s/image   {t / base:.2f}x")


if __name__ == "__main__":
    main()
