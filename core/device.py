"""The one place that knows about CUDA: device resolution and tensor-to-numpy."""

from __future__ import annotations

import functools

import numpy as np
import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"`` (or ``None``) into CUDA when available, else the CPU.

    Any other string (``"cpu"``, ``"cuda:1"``) or ``torch.device`` is returned as a device;
    asking for CUDA where there is none raises a clear ``ValueError``.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but CUDA is not available here; use 'cpu' or 'auto'")
    return dev


def to_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Detach, move to the CPU and convert; numpy arrays pass through."""
    if isinstance(x, np.ndarray):
        return x
    return x.detach().to("cpu").numpy()


#: glibc's ``mallopt`` parameters (``malloc.h``).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


@functools.cache  # once per process
def tune_cpu_allocator() -> bool:
    """Keep the large activation buffers of a CNN's forward pass in the heap between batches.

    glibc serves allocations above its mmap threshold (at most 32 MB when it adapts) with
    fresh ``mmap`` pages and returns them on ``free``; a batch of 16 SFace crops has 51 MB
    activations, so every layer of every batch paid for zero-filled page faults: measured,
    the forward ran at 55-60 faces/s where it runs at 155-175 with the threshold raised
    (``benchmarks/bench_xmap.py``, 2-core CPU). This raises the mmap threshold to 1 GB and
    stops trimming the heap, so freed buffers are reused (the process keeps its peak memory).
    For entry points (the CLI, the apps), not the library: it changes the whole process.
    Linux with glibc only; elsewhere, or with ``XFV_NO_MALLOPT=1``, it does nothing. Returns
    whether it applied."""
    import ctypes
    import logging
    import os
    import sys

    ok = False
    if sys.platform.startswith("linux") and os.environ.get("XFV_NO_MALLOPT") != "1":
        try:
            libc = ctypes.CDLL("libc.so.6")
            ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))
        except (OSError, AttributeError):  # not glibc (musl, ...)
            ok = False
    logging.getLogger(__name__).debug("CPU allocator tuned: %s", ok)
    return ok
