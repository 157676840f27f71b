"""Reopening a saved pair: its ``PairResult`` rebuilt from the JSON (``pair_result``) and what
the viewer shows of it (``pair_view``)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..types import AlignedFace, Explanation, FacePair, PairResult
from .rows import BatchRow
from .store import load_pair_json


def _image_from_uri(uri: str) -> np.ndarray:
    from PIL import Image

    raw = base64.b64decode(uri.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))


def pair_result(out: str | Path, index: int) -> PairResult:
    """The ``PairResult`` of a saved pair, rebuilt from its JSON: the aligned crops (exact,
    from lossless PNG) with their landmarks, every explanation with its exact maps,
    scores, sentences and extras. Scores that were NaN come back as None."""
    return _result_from_json(load_pair_json(out, index))


def _result_from_json(data: dict[str, Any]) -> PairResult:
    from ..report import array_from_record

    geometry = data.get("faces") or [{}, {}]
    faces = []
    for uri, g in zip(data["crops"], geometry, strict=True):
        img = _image_from_uri(uri)
        faces.append(AlignedFace(img, np.asarray(g.get("landmarks", np.zeros((5, 2))), np.float32), np.asarray(g.get("box", np.zeros(4)), np.float32),
                                 np.asarray(g.get("transform", np.eye(2, 3)), np.float64)))  # fmt: skip
    exps = [Explanation(method=e["method"], label=e.get("label", e["method"]), maps=[array_from_record(m) for m in e.get("maps", [])],
                        signed=bool(e.get("signed")), scores=dict(e.get("scores") or {}), text=list(e.get("text") or []),
                        extras=dict(e.get("extras") or {}), runtime_s=float(e.get("runtime_s") or 0.0), error=e.get("error"))
            for e in data.get("explanations", [])]  # fmt: skip
    return PairResult(pair=FacePair(faces[0], faces[1]), similarity=float(data["similarity"]), threshold=float(data["threshold"]),
                      same=bool(data["same"]), c_score=data.get("c_score"), model=data.get("model", ""),
                      weights_hash=data.get("weights_sha256", ""), explanations=exps, params=dict(data.get("params") or {}),
                      notes=list(data.get("notes") or []), timings=dict(data.get("timings_s") or {}))  # fmt: skip


@dataclass
class MapView:
    """One method of a saved pair, ready to show: both faces' rendered maps, the two side by
    side, and a caption; or its error."""

    method: str
    label: str
    caption: str
    maps: list[np.ndarray]
    images: list[np.ndarray]
    image: np.ndarray | None
    text: list[str]
    error: str | None = None


@dataclass
class PairView:
    """What the viewer shows of one saved pair."""

    index: int
    row: BatchRow | None
    result: PairResult
    faces: list[np.ndarray]
    verdict: str
    methods: list[MapView]


def pair_view(out: str | Path, index: int) -> PairView:
    """The viewer's content for pair ``index`` of a saved batch: the aligned crops, the
    verdict sentence and, per method, its maps rendered with ``core.render.render_map``."""
    data = load_pair_json(out, index)
    res = _result_from_json(data)
    row_data = data.get("batch_row")
    row = None
    if isinstance(row_data, dict):
        row = BatchRow(**{k: v for k, v in row_data.items() if k in BatchRow.__dataclass_fields__})
    return result_view(res, int(index), row)


def result_view(res: PairResult, index: int, row: BatchRow | None = None) -> PairView:
    """What the viewer shows of a pair's saved ``PairResult`` (from a batch folder or a
    results store, ``core.batch.duck.stored_pair``): per method its maps rendered."""
    from ..render import render_map, side_by_side
    from ..text.verdict import verdict_sentence

    faces = [f.image for f in res.pair]
    views = []
    for e in res.explanations:
        caption = f"{e.label}: {e.runtime_s:.1f} s"
        if "forward_passes" in e.scores and e.scores["forward_passes"] is not None:
            caption += f", {int(e.scores['forward_passes'])} forward passes"
        if e.extras.get("preset"):
            caption += f", preset {e.extras['preset']}"
        if not e.ok or not e.maps:
            views.append(MapView(e.method, e.label, caption, list(e.maps), [], None, list(e.text), e.error))
            continue
        pics = [render_map(f, m, e.signed, e.extras.get("display")) for f, m in zip(faces, e.maps, strict=True)]
        views.append(MapView(e.method, e.label, caption, list(e.maps), pics, side_by_side(pics), list(e.text)))
    return PairView(index, row, res, faces, verdict_sentence(res), views)
