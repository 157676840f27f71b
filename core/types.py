"""Dataclasses and Protocols shared by every part of the library.

Coordinates are ``(x, y)`` in pixels. Images are ``H x W x 3`` ``uint8`` RGB numpy arrays.
The five landmarks are, in this order: the eye on the image's left (the subject's right
eye), the eye on the image's right, the nose tip, the mouth corner on the image's left and
the mouth corner on the image's right.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

#: A target maps a batch of embeddings ``(B, D)`` to one scalar per sample ``(B,)``,
#: e.g. the cosine similarity to the other face's embedding.
Target = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class DetectedFace:
    """One face found by the detector, in source-image coordinates."""

    box: np.ndarray  # (4,) x1, y1, x2, y2
    landmarks: np.ndarray  # (5, 2)
    score: float

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = (float(v) for v in self.box)
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@dataclass(frozen=True)
class Detection:
    """The face chosen in one image, and what else was there."""

    face: DetectedFace
    faces: tuple[DetectedFace, ...]  # every face found, the chosen one included
    image_size: tuple[int, int]  # (width, height) of the source image
    chosen: int | None = None  # the face asked for (an index of ``faces``, largest first), None: the largest

    @property
    def n_faces(self) -> int:
        return len(self.faces)

    @property
    def note(self) -> str | None:
        """A sentence for the user when the choice was not obvious, else ``None``."""
        if self.n_faces <= 1:
            return None
        box = ", ".join(f"{v:.0f}" for v in self.face.box)
        if self.chosen is not None:
            return f"{self.n_faces} faces were found; face {self.chosen + 1} (box {box}), as chosen, was used."
        return f"{self.n_faces} faces were found; the largest confident one (face 1, box {box}) was used."


@dataclass(frozen=True)
class AlignedFace:
    """A face warped onto the 5-point template at an embedder's input size."""

    image: np.ndarray  # (S, S, 3) uint8 RGB crop
    landmarks: np.ndarray  # (5, 2) landmarks in crop coordinates
    box: np.ndarray  # (4,) detector box in the source image
    transform: np.ndarray  # (2, 3) affine map from source to crop coordinates
    detection: Detection | None = None
    source: np.ndarray | None = field(default=None, repr=False)  # the RGB source image
    template: str = "arcface"  # the 5-point template it is aligned to (core.faces.align.TEMPLATES)

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    @property
    def inverse_transform(self) -> np.ndarray:
        """The (2, 3) affine map from crop back to source coordinates."""
        a = np.vstack([self.transform, [0.0, 0.0, 1.0]])
        return np.linalg.inv(a)[:2]

    @property
    def note(self) -> str | None:
        return self.detection.note if self.detection is not None else None


@dataclass(frozen=True)
class FacePair:
    """Two aligned faces to compare: ``a`` is the probe, ``b`` the reference."""

    a: AlignedFace
    b: AlignedFace

    def __iter__(self) -> Iterator[AlignedFace]:
        return iter((self.a, self.b))


@runtime_checkable
class FaceEmbedder(Protocol):
    """A face recognition model. ``embed`` returns L2-normalised rows.

    These are the members every embedder has; black-box explainers use nothing else. The
    optional ones are Protocols of their own, tested with ``isinstance``: ``HasBatchSize``
    (how many faces to embed at a time), ``EmbedsFaces`` (a batched ``embed_faces``) and
    ``TorchFaceEmbedder`` (the torch module and its layers, for gradients, CAM and ViTs).
    An embedder may also set ``affine_preprocess = False`` to say that masks cannot be
    applied after ``preprocess`` (read by ``core.explainers.perturb.affine_preprocess``).
    """

    name: str
    input_size: int
    embedding_dim: int
    differentiable: bool
    device: torch.device

    def preprocess(self, faces: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 crops at ``input_size`` -> the model's input batch on its device."""
        ...

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """A preprocessed batch ``(B, 3, S, S)`` -> L2-normalised embeddings ``(B, D)``."""
        ...

    def weights_hash(self) -> str:
        """SHA-256 of the weights, for reports and audits."""
        ...


@runtime_checkable
class HasBatchSize(Protocol):
    """An embedder that says how many faces to embed at a time (a cost knob only)."""

    batch_size: int


@runtime_checkable
class HasAlignment(Protocol):
    """An embedder that names the 5-point template its crops are aligned to
    (``core.faces.align.TEMPLATES``); others use ``arcface``."""

    alignment: str


def alignment_of(embedder: FaceEmbedder) -> str:
    """The alignment template ``embedder`` wants its crops on (default ``arcface``)."""
    return str(embedder.alignment) if isinstance(embedder, HasAlignment) else "arcface"


def batch_size_of(embedder: FaceEmbedder, batch_size: int | None = None, default: int = 16) -> int:
    """``batch_size`` when given, else the embedder's own (``HasBatchSize``), else ``default``."""
    return int(batch_size or (embedder.batch_size if isinstance(embedder, HasBatchSize) else default))


@runtime_checkable
class EmbedsFaces(Protocol):
    """An embedder with its own batched, no-gradient embedding of whole lists of crops."""

    def embed_faces(self, faces: Sequence[np.ndarray], batch_size: int | None = None) -> torch.Tensor:
        """RGB uint8 crops -> L2-normalised embeddings ``(N, D)``, ``batch_size`` at a time."""
        ...


@runtime_checkable
class TorchFaceEmbedder(FaceEmbedder, HasBatchSize, EmbedsFaces, Protocol):
    """A differentiable embedder over a torch module (``core.models.base.TorchEmbedder``):
    what gradient, CAM and ViT explainers and concept bottlenecks use besides ``FaceEmbedder``."""

    module: nn.Module  # maps the preprocessed batch to unnormalised embeddings
    feature_layer: str | None  # the name of the last convolutional block, when declared
    channels_last: bool  # whether ``preprocess`` returns channels-last memory

    def features_module(self) -> nn.Module | None:
        """The last convolutional block (or transformer blocks) for hooks, when declared."""
        ...

    def head(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """What the model does after ``features_module``, when declared (CAM needs it)."""
        ...


def torch_module(embedder: FaceEmbedder) -> nn.Module | None:
    """The torch module of a ``TorchFaceEmbedder``; None for a black-box embedder."""
    return embedder.module if isinstance(embedder, TorchFaceEmbedder) else None


@dataclass
class Explanation:
    """What one explainer says about a pair. A failed method fills ``error`` only."""

    method: str
    label: str
    maps: list[np.ndarray] = field(default_factory=list)  # one float32 (S, S) map per face
    signed: bool = False
    scores: dict[str, float] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    runtime_s: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@runtime_checkable
class Explainer(Protocol):
    """An explanation method. ``requires`` names what it needs of the model, e.g.
    ``{"gradients"}``, ``{"blackbox"}``, ``{"clip_text"}``, ``{"vit"}``."""

    name: str
    label: str
    requires: frozenset[str]

    def explain(self, pair: FacePair, embedder: FaceEmbedder, **knobs: Any) -> Explanation: ...

    def close(self) -> None: ...


@dataclass
class PairResult:
    """Everything a report or a later audit of one comparison needs."""

    pair: FacePair
    similarity: float
    threshold: float
    same: bool
    c_score: float | None
    model: str
    weights_hash: str
    explanations: list[Explanation] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no images)."""
        return {
            "same": bool(self.same),
            "similarity": float(self.similarity),
            "threshold": float(self.threshold),
            "c_score": None if self.c_score is None else float(self.c_score),
            "model": self.model,
            "weights_sha256": self.weights_hash,
            "faces_found": [p.detection.n_faces if p.detection is not None else None for p in self.pair],
            "notes": list(self.notes),
            "params": dict(self.params),
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "explanations": [
                {
                    "method": e.method,
                    "label": e.label,
                    "scores": jsonable(e.scores),
                    "text": e.text,
                    "runtime_s": e.runtime_s,
                    "error": e.error,
                    "signed": e.signed,
                    "extras": jsonable(e.extras),
                }
                for e in self.explanations
            ],
        }


def jsonable(value: Any, max_array: int = 64) -> Any:
    """A JSON-ready copy of nested extras: numpy scalars become numbers, small arrays lists;
    large arrays (maps) are left out as a shape note; NaN and infinities become None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v, max_array) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, max_array) for v in value]
    if isinstance(value, np.generic):
        return jsonable(value.item(), max_array)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN (e.g. an undefined score) and infinities are not JSON
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= max_array else f"<array {value.dtype} {tuple(value.shape)}>"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)
