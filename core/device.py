"""The one place that knows about CUDA: device resolution and tensor-to-numpy."""

from __future__ import annotations

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
