"""Embedding throughput: batched against one face at a time, in the same process.

    python benchmarks/bench_embed.py [--model sface] [--device auto] [--n 256] [--repeats 3]

Prints faces/s for batch sizes 1 (the baseline), 8, 32 and 128 on real aligned faces from
../shared/data/faces/deepface, the ratio of each to the baseline, the true floor (the model
alone on the same preprocessed faces, best batch size and memory layout under
``inference_mode``: ``benchmarks/floor.py``) and the machine. Best of --repeats runs; one
warm-up run first. The CPU allocator is tuned as the CLI and the apps tune it
(``core.device.tune_cpu_allocator``) unless ``--no-mallopt``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core import Runner  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "faces" / "deepface"


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sface")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n", type=int, default=256, help="faces per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-mallopt", action="store_true", help="leave glibc's allocator as it is")
    args = ap.parse_args()
    from core.device import tune_cpu_allocator

    tuned = False if args.no_mallopt else tune_cpu_allocator()

    runner = Runner(model=args.model, device=args.device, threshold=0.0)
    emb = runner.embedder
    files = sorted(DATA.glob("img*.jpg"))[:16]
    crops = [runner.prepare(f).image for f in files]
    faces = [crops[i % len(crops)] for i in range(args.n)]
    sync = torch.cuda.synchronize if emb.device.type == "cuda" else (lambda: None)

    def run(bs: int) -> float:
        emb.embed_faces(faces[: max(bs, 8)], batch_size=bs)  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            sync()
            t = time.perf_counter()
            emb.embed_faces(faces, batch_size=bs)
            sync()
            best = min(best, time.perf_counter() - t)
        return args.n / best

    print(f"model {emb.name}, device {emb.device}: {machine(emb.device)}; allocator tuned: {tuned}")
    print(f"{args.n} aligned faces of {emb.input_size}x{emb.input_size}, best of {args.repeats}")
    base = run(1)
    print(f"{'batch':>6} {'faces/s':>9} {'x one-at-a-time':>16}")
    print(f"{1:>6} {base:>9.1f} {1.0:>16.2f}")
    for bs in (8, 32, 128):
        r = run(bs)
        print(f"{bs:>6} {r:>9.1f} {r / base:>16.2f}")
    if hasattr(emb, "module"):
        from benchmarks.floor import true_floor

        floor = min((true_floor(emb.module, emb.preprocess(faces), sync) for _ in range(args.repeats)), key=lambda f: f.seconds)
        print(f"true floor: {floor}, {floor.images_per_s / base:.2f}x one-at-a-time")
    # the same embeddings whatever the batch size
    a = emb.embed_faces(faces[:32], batch_size=1)
    b = emb.embed_faces(faces[:32], batch_size=32)
    print(f"max |batched - unbatched| = {float((a - b).abs().max()):.2e}")


if __name__ == "__main__":
    main()
