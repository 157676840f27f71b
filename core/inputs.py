"""Decoded pixels that remember the file they came from.

A page or a service reads an upload's bytes once, decodes them (``core.io.load_image``)
and passes the pixels on; the audit report must still name the *file* and its SHA-256,
not a hash of decoded pixels that no examiner can check against the exhibit.
``SourcedImage`` is an ``ndarray`` carrying that record (``input_record`` in
``core.report`` uses it); arrays derived from it (slices, resizes) do not inherit it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidImageError
from .io import load_image


class SourcedImage(np.ndarray):
    """``H x W x 3`` ``uint8`` RGB pixels with ``source``: ``{"name", "sha256", "of": "file",
    "bytes"}`` of the file they were decoded from."""

    source: dict[str, Any] | None

    def __new__(cls, pixels: np.ndarray, source: dict[str, Any]) -> SourcedImage:
        obj = np.asarray(pixels).view(cls)
        obj.source = dict(source)
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self.source = None  # a view or a derived array is not the file any more


def load_upload(data: bytes, name: str, max_bytes: int | None = None) -> SourcedImage:
    """An uploaded file's bytes decoded (``core.io.load_image``: formats, budgets, EXIF),
    remembering its name and SHA-256. ``max_bytes``: the most the upload may have (a page's
    own limit), said in MB when exceeded."""
    name = Path(name).name or "the upload"
    if max_bytes is not None and len(data) > max_bytes:
        raise InvalidImageError(f"{name} is {len(data) / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB a photo may have here; "
                                "save it smaller (e.g. as JPEG, or at most about 4,000 px a side)")  # fmt: skip
    pixels = load_image(bytes(data), name=name)
    return SourcedImage(pixels, {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "of": "file", "bytes": len(data)})
