"""Explainable pleural-effusion diagnosis on one chest X-ray (Yalavarthi and Ratha): the
probability from the concept bottleneck of ``core.models.cxr`` and the descriptors that
carry it, in words.

* Supervised mode (a trained head): each activated descriptor's weight in the decision is
  its Group-SoftMax probability times ``W_effusion - W_no_effusion`` (its contribution to
  the logit difference); the top ones, positive (towards effusion) and negative, are listed.
* Zero-shot mode: CLIP's choice between the two class prompts, and the activated descriptor
  of each group ranked by its probability (what CLIP sees; the decision itself is not made
  through them in this mode, and the text says so).

A saliency map where the tower allows (a ViT): ``saliency`` runs the transformer attribution
of Chefer et al. (``core.explainers.vit_lrp``, the method of the face tab's ViT-LRP) from the
decided class's logit (as Chefer et al. explain a classifier's class). Deviation, said here
and in the README: the LRP of the ViT starts at its output embedding ``e`` with each
dimension's share of that logit ``z_c``: exact in zero-shot mode (``z_c = s n(e) . t_c``,
``R_i = s n(e)_i t_c,i``), first-order through the concept scores in supervised mode
(``R_i = n(e)_i (T^T g)_i`` with ``g = dz_c/dS``, the Group SoftMax, head and residual adapter
inside the linearisation).

Images are read with ``core.io.load_image`` (PNG, JPEG, DICOM windowed to 8 bits), resized
on the shorter side and centre-cropped to the tower's input, normalised with its mean/std.
``preview`` shows an upload as the diagnosis reads it (the same decoding and windowing),
only smaller.
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
PREVIEW_SIDE = 512


def preview(src: ImageInput, max_side: int = PREVIEW_SIDE) -> np.ndarray:
    """An upload (PNG, JPEG, DICOM, ...; a path, bytes, a stream, a PIL image or an array) as an
    ``H x W x 3`` RGB ``uint8`` picture of at most ``max_side`` pixels on its long side:
    decoded, and a DICOM windowed, exactly as ``diagnose`` reads it (``core.io.load_image``,
    within its budgets), then shrunk with area interpolation (never enlarged).
    ``InvalidImageError`` says what is wrong with a file that cannot be read."""
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, not {max_side}")
    image = load_image(src)
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, min(max_side, round(w * scale))), max(1, min(max_side, round(h * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def input_size(model: CXRBottleneck) -> int:
    size = getattr(model.visual, "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def prepare_cxr(image: np.ndarray, size: int) -> np.ndarray:
    """The centre square, resized to ``size`` (area interpolation when shrinking): the same
    as shorter side to ``size`` then the centre square, but cropped first, so the memory
    never grows with the image's aspect ratio (a 20000x1 image would have become 4.5
    gigapixels)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top : top + side, left : left + side]
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)


def to_batch(model: CXRBottleneck, crops: list[np.ndarray]) -> torch.Tensor:
    mean = torch.tensor(getattr(model.visual, "image_mean", None) or CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(getattr(model.visual, "image_std", None) or CLIP_STD).view(1, 3, 1, 1)
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
    return ((x - mean) / std).to(model.text.device)


@dataclass
class CXRSaliency:
    map: np.ndarray  # (H, W) in [0, 1] on the crop the model saw
    method: str
    explained: str  # the class whose evidence the map shows
    logit: float  # the explained class's logit


def _class_logit(model: CXRBottleneck, e: torch.Tensor, cls: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class ``cls``'s logit from the tower's output ``e`` and each dimension's share of it."""

    def logits_of(emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        mixed = emb if model.adapter is None or model.alpha >= 1 else model.alpha * emb + (1 - model.alpha) * model.adapter(emb)
        image = torch.nn.functional.normalize(mixed, dim=1)
        if model.head is None:
            return model.logit_scale * image @ model.class_text.t(), None
        scores, probs = model.score(image)
        return model.head(probs), scores

    logit = logits_of(e.float())[0][:, cls]
    if model.head is None:  # linear in n(e): exact shares
        direction = model.logit_scale * model.class_text[cls]
    else:  # first-order shares through the concept scores S = n(I) T^T
        with torch.enable_grad():
            probe = e.detach().float().requires_grad_(True)
            out, scores = logits_of(probe)
            assert scores is not None  # a supervised head scores the concepts
            g = torch.autograd.grad(out[:, cls].sum(), scores)[0]
        direction = g @ model.text
    share = torch.nn.functional.normalize(e.detach().float(), dim=1) * direction
    return logit, share


def saliency(model: CXRBottleneck, image: ImageInput | np.ndarray, method: str = "vit_lrp", effusion: bool | None = None) -> CXRSaliency:
    """Where the tower looked for its decision (``effusion``, default: the model's own), as a
    map in [0, 1] over the centre crop. Raises ``MethodRequirementError`` for a non-ViT tower."""
    from .explainers.vit_lrp import attention_maps, find_vit, to_image

    size = input_size(model)
    crop = image if isinstance(image, np.ndarray) and image.shape[:2] == (size, size) else prepare_cxr(load_image(image), size)
    x = to_batch(model, [crop])
    spec = find_vit(model.visual)
    if effusion is None:
        with torch.no_grad():
            effusion = bool(torch.softmax(model(x).logits.float(), 1)[0, 1] >= 0.5)
    res = attention_maps(model.visual, x, method, lambda out: _class_logit(model, out, int(effusion)), spec)
    heat = to_image(res.maps, crop.shape[:2])[0].cpu().numpy()
    return CXRSaliency(heat.astype(np.float32), method, CLASSES[int(effusion)], float(res.scores[0]))


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
    if model.head is not None:  # supervised
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
