"""Explainable pleural-effusion diagnosis on one chest X-ray (Yalavarthi and Ratha): the
probability from the concept bottleneck of ``core.models.cxr`` and the descriptors that
carry it, in words.

* Supervised mode (a trained head): each activated descriptor's weight in the decision is
  its Group-SoftMax probability times ``W_effusion - W_no_effusion`` (its contribution to
  the logit difference); the top ones, positive (towards effusion) and negative, are listed.
* Zero-shot mode: CLIP's choice between the two class prompts, and the activated descriptor
  of each group ranked by its probability (what CLIP sees; the decision itself is not made
  through them in this mode, and the text says so).

Images are read with ``core.io.load_image`` (PNG, JPEG, DICOM windowed to 8 bits), resized
on the shorter side and centre-cropped to the tower's input, normalised with its mean/std.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from .io import ImageInput, load_image
from .models.cbm import CLIP_MEAN, CLIP_STD
from .models.cxr import CLASSES, CXRBottleneck

TOP = 5


def input_size(model: CXRBottleneck) -> int:
    size = getattr(model.visual, "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def prepare_cxr(image: np.ndarray, size: int) -> np.ndarray:
    """Shorter side to ``size`` (area interpolation when shrinking), then the centre square."""
    h, w = image.shape[:2]
    s = size / min(h, w)
    resized = cv2.resize(image, (max(size, round(w * s)), max(size, round(h * s))), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    top, left = (resized.shape[0] - size) // 2, (resized.shape[1] - size) // 2
    return resized[top : top + size, left : left + size]


def to_batch(model: CXRBottleneck, crops: list[np.ndarray]) -> torch.Tensor:
    mean = torch.tensor(getattr(model.visual, "image_mean", None) or CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(getattr(model.visual, "image_std", None) or CLIP_STD).view(1, 3, 1, 1)
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
    return ((x - mean) / std).to(model.text.device)


@dataclass
class CXRResult:
    probability: float  # of pleural effusion
    effusion: bool
    mode: str  # "zero-shot" or "supervised"
    concepts: list[dict[str, Any]] = field(default_factory=list)  # ranked, with weights
    text: list[str] = field(default_factory=list)
    image: np.ndarray | None = None  # the crop the model saw

    def to_dict(self) -> dict[str, Any]:
        return {"probability": self.probability, "effusion": self.effusion, "mode": self.mode, "concepts": self.concepts, "text": self.text}


@torch.no_grad()
def diagnose(model: CXRBottleneck, image: ImageInput, top: int = TOP, threshold: float = 0.5) -> CXRResult:
    """Pleural effusion or not, and the descriptors that say why."""
    crop = prepare_cxr(load_image(image), input_size(model))
    out = model(to_batch(model, [crop]))
    prob = float(torch.softmax(out.logits.float(), dim=1)[0, 1])
    probs = out.probs[0].cpu().numpy()
    names, ids = model.descriptors.descriptors, np.asarray(model.descriptors.group_ids)
    winners = [int(np.flatnonzero(ids == g)[np.argmax(probs[ids == g])]) for g in range(len(model.descriptors.groups))]
    effusion = prob >= threshold
    verdict = f"{'Pleural effusion' if effusion else 'No pleural effusion'} (probability {prob:.2f}; {CLASSES[1]} at {threshold:.2f} or above)"
    if model.supervised:
        w = (model.head.weight[1] - model.head.weight[0]).cpu().numpy()
        contrib = probs * w
        rows = [{"descriptor": names[i], "group": model.descriptors.groups[ids[i]].name, "probability": float(probs[i]), "weight": float(contrib[i])}
                for i in winners]  # fmt: skip
        rows.sort(key=lambda r: -abs(r["weight"]))
        rows = rows[:top]
        text = [f"{verdict}, decided through {len(names)} radiology descriptors."]
        for r in rows:
            side = "towards" if r["weight"] > 0 else "against"
            text.append(f"{r['descriptor']} ({r['group']}, {r['probability']:.0%}): {side} effusion, weight {r['weight']:+.3f}.")
        mode = "supervised"
    else:
        rows = [
            {"descriptor": names[i], "group": model.descriptors.groups[ids[i]].name, "probability": float(probs[i]), "weight": None} for i in winners
        ]
        rows.sort(key=lambda r: -r["probability"])
        rows = rows[:top]
        text = [f"{verdict}, zero-shot: CLIP compared the image with the two class prompts. What it sees most clearly:"]
        text += [f"{r['descriptor']} ({r['group']}, {r['probability']:.0%})." for r in rows]
        text.append("Zero-shot mode: these descriptors describe the image; the decision was not made through them (train a head for that).")
        mode = "zero-shot"
    return CXRResult(prob, effusion, mode, rows, text, crop)
