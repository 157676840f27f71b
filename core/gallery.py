"""A gallery of known identities: the class embeddings that identification, and SDD's
choice of competing classes, need.

A gallery is a folder with one sub-folder of photos per identity, or an identities CSV
(``file,identity``; files relative to the CSV's folder or to ``images``). Each photo is
detected, aligned and embedded once per model; the embeddings are kept in memory and in
``~/.cache/xfv/galleries`` (keyed by the model's weights hash and the files' sizes and
modification times), so a second run starts at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .data import read_identities, resolve
from .errors import DataError, XFVError

if TYPE_CHECKING:
    from .runner import Runner

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DUPLICATE_SIMILARITY = 0.98  # gallery photos this close to a face being explained are that photo


@dataclass
class Gallery:
    """Embeddings ``(N, D)`` of gallery photos with their identities."""

    files: list[str]
    identities: list[str]
    embeddings: np.ndarray
    source: str
    model: str
    failed: list[tuple[str, str]]

    def __len__(self) -> int:
        return len(self.files)

    @property
    def names(self) -> list[str]:
        """The identities, in first-seen order."""
        return list(dict.fromkeys(self.identities))

    def classes(self, exclude: Sequence[np.ndarray] = (), duplicate: float = DUPLICATE_SIMILARITY) -> tuple[list[str], np.ndarray]:
        """Identity names and their class embeddings (the renormalised mean of the identity's
        photos), leaving out photos whose similarity to any embedding in ``exclude`` is at
        least ``duplicate`` (the faces being explained, when they are in the gallery)."""
        keep = np.ones(len(self.files), bool)
        for e in exclude:
            keep &= self.embeddings @ np.asarray(e, np.float32) < duplicate
        names, embs = [], []
        ids = np.asarray(self.identities)
        for name in self.names:
            sel = keep & (ids == name)
            if not sel.any():
                continue
            m = self.embeddings[sel].mean(0)
            names.append(name)
            embs.append(m / max(float(np.linalg.norm(m)), 1e-12))
        if not names:
            raise DataError(f"gallery {self.source} has no photos left to compare with")
        return names, np.stack(embs).astype(np.float32)


def list_gallery(source: str | Path, images: str | Path | None = None) -> list[tuple[Path, str]]:
    """(photo path, identity) of a gallery folder or identities CSV."""
    src = Path(source)
    if src.is_dir():
        out = [(f, d.name) for d in sorted(p for p in src.iterdir() if p.is_dir())
               for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]  # fmt: skip
        if not out:
            raise DataError(f"gallery folder {src} has no identity sub-folders with photos ({', '.join(IMAGE_SUFFIXES)})")
        return out
    if src.is_file():
        return [(resolve(images, f, src), ident) for f, ident in read_identities(src).items()]
    raise DataError(f"gallery {src}: no such folder or identities CSV")


def _cache_key(model: str, weights: str, items: list[tuple[Path, str]]) -> str:
    h = hashlib.sha256(f"{model}|{weights}".encode())
    for path, ident in items:
        st = path.stat() if path.exists() else None
        h.update(f"{path.resolve()}|{ident}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}".encode())
    return h.hexdigest()[:24]


def cache_dir() -> Path:
    return Path(os.environ.get("XFV_CACHE", Path.home() / ".cache" / "xfv")) / "galleries"


_MEMORY: dict[str, Gallery] = {}


def load_gallery(runner: Runner, source: str | Path, images: str | Path | None = None, progress: bool = False) -> Gallery:
    """Detect, align and embed every photo of a gallery with ``runner``'s model (cached)."""
    items = list_gallery(source, images)
    emb = runner.embedder
    key = _cache_key(emb.name, emb.weights_hash(), items)
    if key in _MEMORY:
        return _MEMORY[key]
    path = cache_dir() / f"{key}.npz"
    if path.is_file():
        try:
            z = np.load(path, allow_pickle=False)
            g = Gallery([str(f) for f in z["files"]], [str(i) for i in z["identities"]], z["embeddings"], str(source), emb.name,
                        [(str(f), str(w)) for f, w in zip(z["failed_files"], z["failed_why"], strict=True)])  # fmt: skip
            _MEMORY[key] = g
            return g
        except (OSError, KeyError, ValueError) as e:
            log.warning("ignoring unreadable gallery cache %s: %s", path, e)
    from tqdm import tqdm

    faces, files, idents, failed = [], [], [], []
    for f, ident in tqdm(items, desc="gallery", unit="img", disable=not progress):
        try:
            faces.append(runner.prepare(f, str(f)))
        except XFVError as e:
            failed.append((str(f), str(e)))
            log.warning("gallery photo left out: %s", e)
            continue
        files.append(str(f))
        idents.append(ident)
    if not faces:
        raise DataError(f"gallery {source}: no photo gave a face")
    g = Gallery(files, idents, runner.embed(faces).astype(np.float32), str(source), emb.name, failed)
    _MEMORY[key] = g
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, files=np.array(files), identities=np.array(idents), embeddings=g.embeddings,
                 failed_files=np.array([f for f, _ in failed], dtype=str), failed_why=np.array([w for _, w in failed], dtype=str))  # fmt: skip
    except OSError as e:
        log.warning("could not cache the gallery embeddings in %s: %s", path, e)
    log.info("gallery %s: %d photos of %d identities (%d left out)", source, len(files), len(g.names), len(failed))
    return g
