"""The true floor of a perturbation method: the fastest plain forward of exactly the images
it embeds, searched over what a careful user would try: batch sizes, memory layouts
(contiguous and channels-last) and ``torch.inference_mode``; the thread count is the
process's (``torch.get_num_threads()``, printed by ``bench_embed.machine``). Each setting
is timed once after a warm-up batch; the best one is the floor.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

BATCH_SIZES = (8, 16, 32, 64)
LAYOUTS = {"channels-last": torch.channels_last, "contiguous": torch.contiguous_format}


@dataclass
class Floor:
    seconds: float
    batch_size: int
    layout: str
    n_images: int

    @property
    def images_per_s(self) -> float:
        return self.n_images / self.seconds

    def __str__(self) -> str:
        return f"{self.seconds:.2f} s ({self.images_per_s:.1f} img/s; batch {self.batch_size}, {self.layout}, inference_mode)"


def _layout(module: nn.Module) -> torch.memory_format:
    """The memory layout ``module``'s first weight is in."""
    first = next(module.parameters())
    return torch.channels_last if first.dim() == 4 and first.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def _batches(images: torch.Tensor, batch_size: int, fmt: torch.memory_format) -> list[torch.Tensor]:
    return [images[i : i + batch_size].contiguous(memory_format=fmt) for i in range(0, len(images), batch_size)]


def _forward_all(module: nn.Module, batches: list[torch.Tensor]) -> None:
    """The plain forward of every batch, normalised rows moved to the CPU as the explainers do."""
    for b in batches:
        F.normalize(module(b), dim=1).cpu()


def true_floor(module: nn.Module, images: torch.Tensor, sync: Callable[[], None] = lambda: None,
               batch_sizes: Sequence[int] = BATCH_SIZES, layouts: Sequence[str] = tuple(LAYOUTS)) -> Floor:  # fmt: skip
    """The best time to embed ``images`` (``(N, 3, S, S)``, model-ready) with ``module``
    alone, over ``batch_sizes`` x ``layouts``; the module is left in the layout it came in."""
    original = _layout(module)
    best: Floor | None = None
    try:
        for layout in layouts:
            fmt = LAYOUTS[layout]
            module.to(memory_format=fmt)
            for bs in batch_sizes:
                batches = _batches(images, bs, fmt)
                with torch.inference_mode():
                    module(batches[0])  # warm-up
                    sync()
                    t = time.perf_counter()
                    _forward_all(module, batches)
                    sync()
                    took = time.perf_counter() - t
                if best is None or took < best.seconds:
                    best = Floor(took, bs, layout, len(images))
    finally:
        module.to(memory_format=original)
    assert best is not None
    return best


class RecordInputs:
    """A context manager that keeps a copy of every batch ``embedder.embed`` is given (on the
    CPU), so a floor can be timed on exactly the images a method embedded: ``with
    RecordInputs(emb) as rec: run(); images = rec.images()``."""

    def __init__(self, embedder: object) -> None:
        self.embedder = embedder
        self.batches: list[torch.Tensor] = []

    def __enter__(self) -> RecordInputs:
        real = self.embedder.embed  # type: ignore[attr-defined]

        def embed(batch: torch.Tensor) -> torch.Tensor:
            self.batches.append(batch.detach().to("cpu", copy=True))
            return real(batch)

        self.embedder.embed = embed  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        del self.embedder.embed  # type: ignore[attr-defined]  # the class's method again

    def images(self) -> torch.Tensor:
        return torch.cat(self.batches) if self.batches else torch.zeros(0)


def floor_run(module: nn.Module, images: torch.Tensor, floor: Floor) -> Callable[[], None]:
    """The floor's best setting as a callable to time again (interleaved with what is compared
    to it: on a noisy machine only runs taken side by side compare)."""
    fmt = LAYOUTS[floor.layout]
    batches = _batches(images, floor.batch_size, fmt)

    def run() -> None:
        original = _layout(module)
        module.to(memory_format=fmt)
        try:
            with torch.inference_mode():
                _forward_all(module, batches)
        finally:
            module.to(memory_format=original)

    return run


def bench_args(ap: argparse.ArgumentParser, repeats: int = 3) -> None:
    """The flags every perturbation benchmark shares: ``--model``, ``--device``, ``--repeats``, ``--no-mallopt``."""
    ap.add_argument("--model", default="sface")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=repeats, help="best of this many interleaved runs")
    ap.add_argument("--no-mallopt", action="store_true", help="leave glibc's allocator as it is (core.device.tune_cpu_allocator)")


def bench_setup(args: argparse.Namespace) -> tuple[bool, Any, Any, Callable[[], None]]:
    """Tune the allocator (unless ``--no-mallopt``) as the CLI does, load the model and align
    the benchmark pair (obama / obama2 of ``../shared/data/faces/misc``): ``(tuned, runner,
    pair, sync)``, ``sync`` waiting for CUDA where the model runs on it."""
    from core import Runner
    from core.device import tune_cpu_allocator

    tuned = False if args.no_mallopt else tune_cpu_allocator()
    runner = Runner(model=args.model, device=args.device, threshold=0.0)
    emb = runner.embedder
    misc = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "misc"
    pair = runner.prepare_pair(misc / "obama.jpg", misc / "obama2.jpg")
    sync = torch.cuda.synchronize if emb.device.type == "cuda" else (lambda: None)
    return tuned, runner, pair, sync
