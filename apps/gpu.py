"""ZeroGPU on Hugging Face Spaces. A Space on ZeroGPU hardware has no GPU until a function
decorated with ``@spaces.GPU`` runs: then one is lent to that call (at most ``duration``
seconds). The page's model work (a comparison, an X-ray, an Explore batch) is decorated so
(``apps.gradio_app``, ``apps.gradio_explore``); the models go to CUDA when it is there
(``core.device.resolve_device("auto")``). Everywhere else, without ``SPACES_ZERO_GPU`` in the
environment, the ``spaces`` package returns each function unchanged.

``spaces`` is imported here once (before anything runs on a GPU, as ZeroGPU asks); a machine
without the package gets a stand-in whose ``GPU`` is the identity, so the app still starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: The longest a decorated call may hold a ZeroGPU device (seconds): a full-preset pair with
#: several methods on a GPU takes well under this; a long Explore batch is cut at it.
GPU_SECONDS = 120


class _NoSpaces:
    """``spaces`` where the package is not installed: ``GPU`` returns the function."""

    @staticmethod
    def GPU(task: Callable[..., Any] | None = None, **_: Any) -> Any:  # noqa: N802 (the package's name)
        return task if callable(task) else (lambda fn: fn)


try:
    import spaces
except ImportError:  # pragma: no cover - a requirement; only a hand-made environment lacks it
    log.info("the spaces package is not installed: @spaces.GPU does nothing (it does nothing off Spaces either)")
    spaces = _NoSpaces()  # type: ignore[assignment]

__all__ = ["GPU_SECONDS", "spaces"]
