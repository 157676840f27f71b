"""Shared machinery of the perturbation (black-box) explainers: compose perturbed copies of
an aligned face from soft masks, embed them in large batches on the model's device, and
cache the embeddings so other methods and reruns reuse them.

A perturbed image is ``x * (1 - m) + fill * m`` for a mask ``m`` in [0, 1] (1 = hidden).
For embedders whose preprocessing is a per-pixel affine map of the uint8 crop (every
``TorchEmbedder``: channel order, ``(x - mean) / std``), composing after preprocessing is
exactly the same as composing in pixel space, and avoids rounding soft masks to uint8. For
any other embedder the images are composed in pixel space, rounded to uint8 and passed
through its ``preprocess``.

Forward passes are counted per call, never in a process-global counter (two explanations
running at once in two threads each see only their own): an explainer call creates one
``Ledger`` and passes it down explicitly to every ``Perturber``, ``embed_faces`` and
``remember`` it uses. The ledger holds the passes the call ran itself and the cached values
it was served; each cached value keeps its provenance: which method computed it, with how
many forward passes and in how long (``Provenance``). So a map made from another method's
embeddings says whose they are and what they cost (``Explanation.scores["forward_passes"]``:
run by this call; ``Explanation.extras["cached_from"]``: taken from the cache, by owner).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidParameterError
from ..models.base import chunks
from ..models.incremental import FULL_FRACTION, IncrementalOcclusion
from ..models.incremental import plan_of as incremental_plan
from ..types import FaceEmbedder, TorchFaceEmbedder, batch_size_of

log = logging.getLogger(__name__)

FILL_NAMES = ("black", "grey", "white", "noise", "near_black_noise", "mean")


T = TypeVar("T")


@dataclass(frozen=True)
class Provenance:
    """Who computed one cached value and what computing it cost (its own passes and time,
    not those of the cached values it was built from: those have their own records)."""

    key: str  # the cache key of the value
    method: str | None  # registry key of the explainer that computed it (None: a direct call)
    label: str | None  # that explainer's label
    forward_passes: int
    runtime_s: float


@dataclass
class _Frame:
    used: dict[str, Provenance] = field(default_factory=dict)  # every value the computation relied on
    passes: int = 0  # forward passes of the values computed (and stored) within it
    runtime_s: float = 0.0


@dataclass
class Ledger:
    """What one explainer call cost: the forward passes it ran (``forward_passes``), the
    cache hits it had (``cache_hits``) and the cached values it was served (``served``), each
    with who computed it and at what cost (``cached_passes``, ``cached_by``). Created by
    the call and passed down explicitly; one per call, never shared between calls or threads
    (so there is nothing global to lock or to read as a before/after difference)."""

    method: str | None = None  # registry key of the explainer making the call (the owner of what it computes)
    label: str | None = None
    forward_passes: int = 0  # run by this call
    cache_hits: int = 0  # lookups of ``remember`` answered by the cache
    served: dict[str, Provenance] = field(default_factory=dict)  # provenance of what came from the cache, by key
    computed: dict[str, Provenance] = field(default_factory=dict)  # what this call computed and stored, by key
    _frames: list[_Frame] = field(default_factory=list, init=False, repr=False, compare=False)

    def ran(self, n: int) -> None:
        """Count ``n`` forward passes run by this call."""
        self.forward_passes += int(n)

    @property
    def cached_passes(self) -> int:
        """Forward passes this call took from the cache instead of running them (each cached
        value once, however often it was read)."""
        return sum(p.forward_passes for p in self.served.values())

    @property
    def cached_by(self) -> dict[str | None, int]:
        """The passes taken from the cache by the method that computed them (the cache key's
        owner; None: a direct call outside any explainer), most first."""
        by: dict[str | None, int] = {}
        for p in self.served.values():
            by[p.method] = by.get(p.method, 0) + p.forward_passes
        return dict(sorted(by.items(), key=lambda kv: -kv[1]))

    def cached_from(self) -> dict[str, Any] | None:
        """``{"method", "label", "forward_passes", "runtime_s", "sources"}`` of the values
        served from the cache (totals; ``method`` is the source with the most passes,
        ``sources`` one entry per method), or None when nothing came from the cache."""
        if not self.served:
            return None
        by: dict[tuple[str | None, str | None], dict[str, Any]] = {}
        for p in self.served.values():
            row = by.setdefault((p.method, p.label), {"method": p.method, "label": p.label, "forward_passes": 0, "runtime_s": 0.0})
            row["forward_passes"] += p.forward_passes
            row["runtime_s"] += p.runtime_s
        sources = sorted(by.values(), key=lambda r: (-r["forward_passes"], -r["runtime_s"]))
        for r in sources:
            r["runtime_s"] = round(r["runtime_s"], 3)
        total_s = round(sum(p.runtime_s for p in self.served.values()), 3)
        return {"method": sources[0]["method"], "label": sources[0]["label"], "forward_passes": sum(r["forward_passes"] for r in sources),
                "runtime_s": total_s, "sources": sources}  # fmt: skip

    def _use(self, origins: tuple[Provenance, ...]) -> None:
        for f in self._frames:
            f.used.update((p.key, p) for p in origins)


def remember(key: str, compute: Callable[[], T], ledger: Ledger | None = None) -> T:
    """The value cached under ``key``, or ``compute()`` stored with its provenance: the
    ledger's method, the passes and time it took itself, and the provenance of every cached
    value it was built from (so a value served later names all its sources, each once).
    Forward passes must be counted on ``ledger`` (``Perturber(ledger=...)``)."""
    ledger = ledger if ledger is not None else Ledger()
    hit = CACHE.lookup(key)
    if hit is not None:
        value, origins = hit
        ledger.cache_hits += 1
        ledger.served.update((p.key, p) for p in origins if p.key not in ledger.computed)  # not what this call made
        ledger._use(origins)
        return value
    frame = _Frame()
    ledger._frames.append(frame)
    passes0, t0 = ledger.forward_passes, time.perf_counter()
    try:
        value = compute()
    finally:
        ledger._frames.pop()
    took, runtime = ledger.forward_passes - passes0, time.perf_counter() - t0
    own = Provenance(key, ledger.method, ledger.label, took - frame.passes, max(0.0, runtime - frame.runtime_s))
    CACHE.put(key, value, (own, *frame.used.values()))
    ledger.computed[key] = own
    ledger._use((own,))
    for f in ledger._frames:  # the enclosing computations do not count these passes as their own
        f.passes += own.forward_passes
        f.runtime_s += own.runtime_s
    return value


class LRUCache:
    """A small thread-safe LRU keyed by strings, bounded by the number of bytes its numpy /
    torch values hold (other values count as 1 KiB). Each value may carry its provenance
    (``lookup``); ``get`` returns the value alone."""

    def __init__(self, max_bytes: int = 512 << 20) -> None:
        self.max_bytes = max_bytes
        self._data: OrderedDict[str, tuple[Any, int, tuple[Provenance, ...]]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def _size(value: Any) -> int:
        if isinstance(value, np.ndarray):
            return value.nbytes
        if isinstance(value, torch.Tensor):
            return value.numel() * value.element_size()
        if isinstance(value, (tuple, list)):
            return sum(LRUCache._size(v) for v in value)
        if isinstance(value, dict):
            return sum(LRUCache._size(v) for v in value.values())
        return 1024

    def get(self, key: str) -> Any | None:
        hit = self.lookup(key)
        return None if hit is None else hit[0]

    def lookup(self, key: str) -> tuple[Any, tuple[Provenance, ...]] | None:
        """``(value, provenance)`` of ``key``, or None when it is not cached."""
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            self._data.move_to_end(key)
            return item[0], item[2]

    def put(self, key: str, value: Any, provenance: tuple[Provenance, ...] = ()) -> None:
        size = self._size(value)
        with self._lock:
            if key in self._data:
                self._bytes -= self._data.pop(key)[1]
            self._data[key] = (value, size, tuple(provenance))
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._data) > 1:
                _, (_, s, _) = self._data.popitem(last=False)
                self._bytes -= s

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._data)


CACHE = LRUCache()


def clear_cache() -> None:
    """Forget every cached perturbed embedding and explanation."""
    CACHE.clear()


def digest(*parts: Any) -> str:
    """A short stable hash of arrays, tensors and plain values (cache keys)."""
    h = hashlib.sha1()
    for p in parts:
        if isinstance(p, torch.Tensor):
            p = p.detach().cpu().numpy()
        if isinstance(p, np.ndarray):
            h.update(str((p.dtype, p.shape)).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(repr(p).encode())
        h.update(b"|")
    return h.hexdigest()[:24]


def model_key(embedder: FaceEmbedder) -> str:
    """Identifies the model for caching: name, weights, device and precision (``half_precision``)."""
    try:
        wh = embedder.weights_hash()
    except Exception:  # a black-box model may not know its weights
        wh = str(id(embedder))
    half = half_dtype(embedder.device)
    return f"{embedder.name}:{wh[:16]}:{embedder.device}" + (f":{half}" if half is not None else "")


def half_dtype(device: torch.device | str) -> torch.dtype | None:
    """The dtype black-box batches (the perturbed crops of X-Maps, RISE, removal/aggregation,
    faithfulness probes) run in, or None for float32 (the default). ``XFV_HALF=1``: float16
    on a GPU (``torch.autocast``; embeddings back in float32, the verdict's clean embeddings
    unchanged); ignored on a CPU, where bfloat16 measured 10-14x slower than float32 on these
    machines (no native bfloat16). ``XFV_HALF=cpu`` forces bfloat16 on a CPU too, to measure
    what reduced precision does to the maps (README: Performance)."""
    value = os.environ.get("XFV_HALF", "").strip().lower()
    kind = torch.device(device).type
    if value == "cpu" and kind == "cpu":
        return torch.bfloat16
    return torch.float16 if value in ("1", "true", "yes", "on", "cpu") and kind == "cuda" else None


def crop_at_input_size(image: np.ndarray, size: int) -> np.ndarray:
    """The RGB uint8 crop resized to the model's input size when it is not already."""
    if image.shape[:2] == (size, size):
        return image
    interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def fill_image(image: np.ndarray, fill: str | float | tuple[float, float, float], seed: int = 0) -> np.ndarray:
    """What hidden pixels become, as an (S, S, 3) float32 image in 0-255: a colour name
    (black, grey, white), ``noise`` (uniform, fixed by ``seed``), ``near_black_noise`` (each
    pixel and channel 0 or 1 with equal odds, fixed by ``seed``: Mery and Morris's start
    image, ``np.random.rand(h, w, 3) * 2`` cast to uint8), ``mean`` (the face's mean colour),
    a grey level or an RGB triple."""
    s = image.shape[0]
    if isinstance(fill, str):
        name = fill.lower().replace("gray", "grey")
        if name == "black":
            value: Any = 0.0
        elif name == "grey":
            value = 127.5
        elif name == "white":
            value = 255.0
        elif name == "mean":
            value = image.reshape(-1, 3).mean(0)
        elif name == "noise":
            rng = np.random.default_rng(seed)
            return rng.uniform(0, 255, size=(s, s, 3)).astype(np.float32)
        elif name == "near_black_noise":
            return np.random.default_rng(seed).integers(0, 2, size=(s, s, 3)).astype(np.float32)
        else:
            raise InvalidParameterError(f"unknown fill {fill!r}; use one of {', '.join(FILL_NAMES)}, a grey level or an RGB triple")
    else:
        value = np.asarray(fill, dtype=np.float32)
        if value.size not in (1, 3) or np.any(value < 0) or np.any(value > 255):
            raise InvalidParameterError(f"fill must be a grey level or RGB triple in 0-255, got {fill!r}")
    return np.broadcast_to(np.asarray(value, dtype=np.float32), (s, s, 3)).copy()


FillT = TypeVar("FillT", bound=str | float | tuple)


def check_fill(fill: FillT) -> FillT:
    """Validate a fill / hiding value early (see ``fill_image``); returns it unchanged."""
    fill_image(np.zeros((2, 2, 3), np.uint8), fill)
    return fill


def affine_preprocess(embedder: FaceEmbedder) -> bool:
    """True when ``preprocess`` is a per-pixel affine map at input size (so masks can be
    applied after it). Set ``affine_preprocess = False`` on an embedder to opt out."""
    flag = getattr(embedder, "affine_preprocess", None)
    if flag is not None:
        return bool(flag)
    from ..models.base import TorchEmbedder

    return isinstance(embedder, TorchEmbedder)


class Perturber:
    """Embeds masked copies of one face against one fill.

    ``embed(masks)`` takes ``(N, S, S)`` masks in [0, 1] (1 = hidden) as a float32 tensor
    or numpy array, or a callable ``masks(slice) -> tensor`` that builds them a batch at a
    time, and returns the ``(N, D)`` L2-normalised embeddings on the CPU. Its forward
    passes are counted on ``ledger`` (the calling explainer's; a private one when not given).
    """

    def __init__(self, embedder: FaceEmbedder, image: np.ndarray, fill: str | float | tuple = "black", seed: int = 0,
                 batch_size: int | None = None, ledger: Ledger | None = None, incremental: bool = False) -> None:  # fmt: skip
        self.embedder = embedder
        self.ledger = ledger if ledger is not None else Ledger()
        self.size = int(embedder.input_size)
        self.image = crop_at_input_size(np.asarray(image), self.size)
        self.fill = fill_image(self.image, fill, seed)
        self.batch_size = batch_size_of(embedder, batch_size)
        if self.batch_size < 1:
            raise InvalidParameterError(f"batch_size must be >= 1, got {self.batch_size}")
        self.affine = affine_preprocess(embedder)
        self.device = embedder.device
        if self.affine:
            fill_u8 = np.clip(np.rint(self.fill), 0, 255).astype(np.uint8)
            exact_fill = np.array_equal(fill_u8.astype(np.float32), self.fill)
            with torch.no_grad():
                self._x = embedder.preprocess([self.image]).float()
                if exact_fill:
                    self._f = embedder.preprocess([fill_u8]).float()
                else:  # a fractional fill (e.g. grey 127.5): preprocess is affine, so interpolate
                    lo = embedder.preprocess([np.floor(self.fill).astype(np.uint8)]).float()
                    hi = embedder.preprocess([np.minimum(np.floor(self.fill) + 1, 255).astype(np.uint8)]).float()
                    frac = torch.from_numpy(self.fill - np.floor(self.fill)).to(self.device).permute(2, 0, 1)[None]
                    self._f = lo + (hi - lo) * frac
        # incremental inference for compact masks (occlusion patches): models.incremental
        self._plan = incremental_plan(embedder) if incremental and self.affine else None
        self._engine: IncrementalOcclusion | None = None

    def compose(self, masks: torch.Tensor) -> torch.Tensor:
        """Model-ready batch of perturbed images for ``(B, S, S)`` masks."""
        m = masks.to(self.device, torch.float32)[:, None]
        if self.affine:
            x = self._x * (1 - m) + self._f * m
            channels_last = isinstance(self.embedder, TorchFaceEmbedder) and self.embedder.channels_last
            return x.contiguous(memory_format=torch.channels_last) if channels_last else x
        img = torch.from_numpy(self.image).to(self.device).permute(2, 0, 1)[None].float()
        fil = torch.from_numpy(self.fill).to(self.device).permute(2, 0, 1)[None]
        pix = (img * (1 - m) + fil * m).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return self.embedder.preprocess(list(pix))

    @torch.no_grad()
    def embed(self, masks: torch.Tensor | np.ndarray | Callable[[slice], torch.Tensor], n: int | None = None,
              progress: Callable[[int, int], Any] | None = None) -> torch.Tensor:  # fmt: skip
        if callable(masks):
            if n is None:
                raise ValueError("n is needed when masks is a callable")
            get = masks
        else:
            t = torch.as_tensor(masks)
            n = int(t.shape[0])

            def get(sl: slice, t: torch.Tensor = t) -> torch.Tensor:
                return t[sl]

        out = []
        done = 0
        for sl in chunks(n, self.batch_size):
            out.append(self._embed_batch(get(sl)).float().cpu())
            done += sl.stop - sl.start
            self.ledger.ran(sl.stop - sl.start)
            if progress is not None:
                progress(done, n)
        return torch.cat(out) if out else torch.zeros((0, self.embedder.embedding_dim))

    def _embed_batch(self, masks: torch.Tensor) -> torch.Tensor:
        """Embeddings of one batch (in half precision under ``XFV_HALF``: ``half_dtype``)."""
        dtype = half_dtype(self.device)
        if dtype is None:
            return self._embed_exact(masks)
        with torch.autocast(self.device.type, dtype=dtype):
            return F.normalize(self._embed_exact(masks).float(), dim=1)

    def _embed_exact(self, masks: torch.Tensor) -> torch.Tensor:
        """Embeddings of one batch: incremental when the masks' common bounding box is
        small enough to pay (``models.incremental``), else the full forward pass."""
        x = self.compose(masks)
        if self._plan is None or masks.shape[0] == 0:
            return self.embedder.embed(x)
        box = window_of(masks.to(self.device))
        if box is None:
            return self.embedder.embed(x)
        (y0, h), (x0, w) = box
        if self._engine is None:
            self._engine = IncrementalOcclusion(self._plan, self._x)
        b = torch.arange(x.shape[0], device=x.device)[:, None, None]
        ys = (y0[:, None] + torch.arange(h, device=x.device))[:, :, None]
        xs = (x0[:, None] + torch.arange(w, device=x.device))[:, None, :]
        windows = x.permute(0, 2, 3, 1)[b, ys, xs].permute(0, 3, 1, 2)
        return F.normalize(self._engine.embed(windows, y0, x0), dim=1)

    @torch.no_grad()
    def reference(self) -> torch.Tensor:
        """Embedding of the unperturbed face (one forward pass)."""
        return self.embed(torch.zeros((1, self.size, self.size)))[0]


def window_of(masks: torch.Tensor, max_fraction: float = FULL_FRACTION) -> tuple[tuple[torch.Tensor, int], tuple[torch.Tensor, int]] | None:
    """Per mask of ``(B, S, S)`` the top row and left column of a window of one common size
    that holds every non-zero pixel (moved inside the map at the edges): ``((y0, h), (x0,
    w))``, or None when that window covers more than ``max_fraction`` of the map."""
    s_h, s_w = masks.shape[1:]
    rows, cols = masks.amax(2) > 0, masks.amax(1) > 0

    def span(hit: torch.Tensor, n: int) -> tuple[torch.Tensor, int]:
        idx = torch.arange(n, device=hit.device)
        first = torch.where(hit, idx, n).amin(1)
        last = torch.where(hit, idx, -1).amax(1)
        first = torch.where(last < 0, 0, first)  # an empty mask: any one-pixel window
        size = int((last - first).clamp(min=0).max()) + 1
        return first.clamp(max=n - size), size

    (y0, h), (x0, w) = span(rows, s_h), span(cols, s_w)
    return None if h * w > max_fraction * s_h * s_w else ((y0, h), (x0, w))


@torch.no_grad()
def embed_faces(embedder: FaceEmbedder, images: list[np.ndarray], batch_size: int | None = None, ledger: Ledger | None = None) -> torch.Tensor:
    """Unperturbed embeddings of crops (counted as forward passes, on ``ledger`` when
    given), ``(N, D)`` on the CPU."""
    size = int(embedder.input_size)
    crops = [crop_at_input_size(np.asarray(im), size) for im in images]
    bs = batch_size_of(embedder, batch_size)
    out = [F.normalize(embedder.embed(embedder.preprocess(crops[sl])).float(), dim=1).cpu() for sl in chunks(len(crops), bs)]
    (ledger if ledger is not None else Ledger()).ran(len(crops))
    return torch.cat(out)
