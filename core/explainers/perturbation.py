"""The perturbation-family template: a method that hides parts of one face, embeds the
hidden copies and scores each against the other face, then turns (masks, scores) into a map.

A variant is one small class with two hooks (as grad-cam's ``BaseCAM.get_cam_weights`` is for
the CAM family): ``masks(size, params, rng) -> (N, S, S)`` float32 in [0, 1] (1 = hidden) and
``saliency(masks, scores, params) -> (S, S)``, where ``scores[i]`` is the cosine similarity of
face ``x`` hidden by mask ``i`` to the other, unhidden face. ``core.explainers.rise`` is one.
An unsigned (``signed = False``) map is shown scaled to [0, 1] (min-max, as saliency figures
are); its own range is kept in the scores (``raw_min_a`` ... ``raw_max_b``).
The X-Maps and Mery's removal keep their own code (they share embeddings across methods).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from ..types import Explanation, FaceEmbedder, FacePair
from . import perturb
from .base import BaseExplainer
from .knobs import check_knobs, from_preset, params_from


class PerturbationExplainer(BaseExplainer):
    """Template: subclasses set ``params`` (their knob dataclass, with ``fill`` and ``seed``
    fields), ``meaning`` and ``signed``, and define ``masks`` and ``saliency``; ``presets``
    (named instances of ``params``, ``full`` and ``fast``) when the method has presets."""

    params: ClassVar[type]
    presets: ClassVar[Mapping[str, Any] | None] = None
    signed: ClassVar[bool] = False
    meaning: ClassVar[str] = ""

    def masks(self, size: int, params: Any, rng: np.random.Generator) -> torch.Tensor:
        raise NotImplementedError

    def saliency(self, masks: torch.Tensor, scores: torch.Tensor, params: Any) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def params_of(cls, knobs: dict[str, Any]) -> Any:
        """The call's knobs as an instance of ``params``: the chosen preset (when the method
        has presets) with the knobs given put in its place, checked."""
        if cls.presets is None:
            return params_from(cls.params, knobs)
        params = from_preset(cls.presets, knobs)
        check_knobs(params)
        return params

    def explain(self, pair: FacePair, embedder: FaceEmbedder, **knobs: Any) -> Explanation:
        params: Any = self.params_of(knobs)
        perturb.check_fill(params.fill)
        ledger = perturb.Ledger(self.name, self.label)
        size, bs, progress = int(embedder.input_size), knobs.get("batch_size"), knobs.get("progress")
        ref = perturb.embed_faces(embedder, [pair.a.image, pair.b.image], bs, ledger)
        maps, similarity = [], float((ref[0] * ref[1]).sum())
        raw: dict[str, float] = {}
        for i, face in enumerate(pair):
            rng = np.random.default_rng(params.seed + i)  # each face its own masks, the same on every run
            masks = self.masks(size, params, rng)
            emb = perturb.Perturber(embedder, face.image, params.fill, params.seed, bs, ledger).embed(masks, progress=progress)
            scores = emb @ ref[1 - i]
            s = np.asarray(self.saliency(masks, scores, params), np.float64)
            side = "ab"[i]
            raw |= {f"raw_min_{side}": float(s.min()), f"raw_max_{side}": float(s.max())}
            if not self.signed:  # an unsigned map is shown in [0, 1] (min-max); its own range stays in the scores
                span = s.max() - s.min()
                s = (s - s.min()) / span if span > 0 else np.zeros_like(s)
            maps.append(s.astype(np.float32))
        scores_out = {"similarity": similarity, "mean_map_a": float(maps[0].mean()), "mean_map_b": float(maps[1].mean()),
                      **raw, "forward_passes": float(ledger.forward_passes)}  # fmt: skip
        return Explanation(method=self.name, label=self.label, maps=maps, signed=self.signed, scores=scores_out,
                           extras={"params": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(params).items()},
                                   "meaning": self.meaning})  # fmt: skip
