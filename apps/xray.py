"""The chest X-ray tab's handlers (both apps): the model built once, and one X-ray diagnosed
as plain data (decision, descriptors, chart, saliency map); errors come back as messages."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from core import XFVError
from core.errors import ModelUnavailableError
from core.render import render_map


class CXRModels:
    """The chest X-ray bottleneck, built once: ``clip`` (default ``XFV_CXR_CLIP`` or BiomedCLIP
    from the local Hugging Face cache) and an optional trained ``head`` (``XFV_CXR_HEAD``).
    ``model`` injects one (tests)."""

    def __init__(self, model: Any = None, clip: str | None = None, head: str | None = None) -> None:
        self._model = model
        self.clip = clip or os.environ.get("XFV_CXR_CLIP") or None
        self.head = head or os.environ.get("XFV_CXR_HEAD") or None
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._model is None:
                from core.models.cxr import cxr_bottleneck, load_cxr_clip, load_cxr_head

                clip, tokenizer, spec = load_cxr_clip(self.clip)
                model = cxr_bottleneck(clip, tokenizer, cache_key=spec)
                if self.head:
                    load_cxr_head(model, self.head)
                self._model = model
            return self._model


CXR_SALIENCY = {"vit_lrp": "ViT-LRP (Chefer et al.)", "vit_lrp_nograd": "No-Grad ViT-LRP", "rollout": "attention rollout", "none": "no map"}


def diagnose_xray(models: CXRModels, path: str | Path | None, saliency_method: str = "vit_lrp", top: int = 5) -> dict[str, Any]:
    """Pleural effusion on one X-ray (PNG, JPEG or DICOM): the decision with its probability,
    the descriptors in words, a chart of their weights and, where the tower is a ViT, a
    saliency map of the decision. Errors come back as messages."""
    from core.cxr import diagnose, saliency
    from core.explainers.concepts import bar_chart

    if not path:
        return {"ok": False, "message": "Upload a chest X-ray (PNG, JPEG or DICOM)."}
    try:
        model = models.get()
    except ModelUnavailableError as e:
        return {"ok": False, "message": f"The chest X-ray model cannot run here: {e}"}
    try:
        res = diagnose(model, path, top=top)
    except XFVError as e:
        return {"ok": False, "message": f"Could not read this X-ray: {e}"}
    if res.mode == "supervised":
        chart = bar_chart([r["descriptor"] for r in res.concepts], [r["weight"] for r in res.concepts],
                          "Descriptors behind the decision", "weight towards effusion")  # fmt: skip
    else:
        chart = bar_chart([r["descriptor"] for r in res.concepts], [r["probability"] for r in res.concepts],
                          "What CLIP sees (zero-shot)", "probability in its group")  # fmt: skip
    out: dict[str, Any] = {"ok": True, "result": res, "message": f"**{res.text[0]}**", "words": "\n".join(f"- {t}" for t in res.text[1:]),
                           "chart": chart, "image": res.image, "saliency": None, "saliency_caption": ""}  # fmt: skip
    if saliency_method and saliency_method != "none":
        try:
            sal = saliency(model, res.image, saliency_method, res.effusion)
            out["saliency"] = render_map(res.image, sal.map, signed=False)
            out["saliency_caption"] = f"{CXR_SALIENCY.get(saliency_method, saliency_method)}: evidence for '{sal.explained}'"
        except XFVError as e:
            out["saliency_caption"] = f"No saliency map for this model: {e}"
    return out
