"""The pair-level work of a whole-benchmark run, the same for every engine (``core.batch.engine``
only schedules it): stage 1 detects and aligns each distinct photo once (``align_photos``),
stage 2 verifies and explains one part of pairs (``explain_part``) into the rows of the results
store's tables (``core.batch.parquet``): one row per pair, one row per pair and method with its
two maps in float16, one row per photo with its aligned crop.

A photo that cannot be read or has no face is a message instead of a crop, and each pair it is
in becomes an error row; a pair whose explanation raises is an error row too (the run goes on).
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import confined, resolve
from ..errors import XFVError
from ..types import AlignedFace, FacePair, PairResult, jsonable
from .rows import DIFFERENT, SAME
from .source import _Scrub

if TYPE_CHECKING:
    from ..runner import Runner

log = logging.getLogger(__name__)

#: The faithfulness scores stored per method (``Runner.faithfulness``), and the random map's.
FAITH_SCORES = ("deletion_auc", "insertion_auc", "confidence_drop_pct", "prediction_change_pct")
RANDOM = "random"


@dataclass(frozen=True)
class PairTask:
    """One pair to run: its id (its line in the pairs list, 0-based), files, label, fold."""

    pair_id: int
    file_x: str
    file_y: str
    same: bool | None = None
    fold: int | None = None


@dataclass(frozen=True)
class RunnerSpec:
    """What a worker needs to build the runner itself (a model is loaded once per worker)."""

    model: str
    device: str = "auto"
    calibration: str | None = None
    threshold: float | None = None

    def build(self) -> Runner:
        from ..runner import Runner

        return Runner(model=self.model, device=self.device, calibration=self.calibration, threshold=self.threshold)


@dataclass
class PartResult:
    """The rows one part of pairs adds to the store (``pairs``, ``maps``; ``faces``: crops of
    the photos of this part, the driver keeps the first of each) and the worker that ran it."""

    pairs: list[dict[str, Any]] = field(default_factory=list)
    maps: list[dict[str, Any]] = field(default_factory=list)
    faces: list[dict[str, Any]] = field(default_factory=list)
    worker_pid: int = 0
    seconds: float = 0.0


def photo_path(base: Path | None, name: str, root: Path | None = None) -> Path | None:
    """Where photo ``name`` is: relative to ``base`` (the images folder); with ``root`` (an
    upload folder) only a file inside it, else None."""
    if root is not None:
        return confined(base or root, name, root)
    return resolve(base, name, base) if base is not None else Path(name)


def align_photo(runner: Runner, name: str, base: Path | None, root: Path | None = None,
                hide: Callable[[str], str] | None = None) -> AlignedFace | str:  # fmt: skip
    """One photo detected and aligned (``Runner.prepare``), or the message saying why it could
    not be. With ``root`` (an upload folder, resolved) only a file inside it is read and no
    message names the folder (``hide``, default ``source._Scrub`` of ``root``) or says more
    than an unexpected error's kind."""
    path = photo_path(base, name, root)
    if path is None:
        return f"{name}: not in your upload"
    try:
        return runner.prepare(path, name)
    except XFVError as e:
        log.warning("%s", e)
        return (hide or _Scrub(root, root))(str(e))
    except Exception as e:  # an unreadable file that io did not type: this photo's error, not the run's end
        log.exception("could not read %s", name)
        return f"{name}: could not be read ({type(e).__name__})" if root is not None else f"{name}: {type(e).__name__}: {e}"


def align_photos(runner: Runner, names: Sequence[str], base: str | Path | None, root: str | Path | None = None) -> dict[str, AlignedFace | str]:
    """Stage 1: each photo as ``align_photo`` gives it, without its source image (the big part)."""
    base_dir = None if base is None else Path(base)
    root_dir = None if root is None else Path(root)
    out: dict[str, AlignedFace | str] = {}
    for name in names:
        face = align_photo(runner, name, base_dir, root_dir)
        out[name] = face if isinstance(face, str) else replace(face, source=None)
    return out


def explain_part(runner: Runner, tasks: Sequence[PairTask], faces: dict[str, AlignedFace | str], methods: Sequence[str],
                 knobs: dict[str, Any], faithfulness: bool = False,
                 embeddings: dict[str, np.ndarray] | None = None) -> PartResult:  # fmt: skip
    """Stage 2: verify and explain each pair of ``tasks`` with ``faces`` from stage 1.
    ``embeddings`` caches each photo's embedding across calls (one face per call: the same bits
    whichever pair it first came in, so a resumed run equals an uninterrupted one)."""
    t_start = time.perf_counter()
    cache = embeddings if embeddings is not None else {}
    part = PartResult(worker_pid=os.getpid())
    seen: set[str] = set()
    for t in tasks:
        row = empty_row(t, methods, faithfulness)
        a, b = faces.get(t.file_x, f"{t.file_x}: not aligned"), faces.get(t.file_y, f"{t.file_y}: not aligned")
        if isinstance(a, str) or isinstance(b, str):
            row["error"] = a if isinstance(a, str) else str(b)
            part.pairs.append(row)
            continue
        for name, f in ((t.file_x, a), (t.file_y, b)):
            if name not in seen:
                seen.add(name)
                part.faces.append(face_row(name, f))
        t0 = time.perf_counter()
        try:
            for name, f in ((t.file_x, a), (t.file_y, b)):
                if name not in cache:
                    cache[name] = np.asarray(runner.embed([f])[0], np.float32)
            res = runner.explain(FacePair(a, b), methods=list(methods), embeddings=(cache[t.file_x], cache[t.file_y]), **knobs)
            faith = runner.faithfulness(res) if faithfulness and res.explanations else {}
        except XFVError as e:
            row["error"] = str(e)
        except Exception as e:  # a bug on one pair must not lose the others
            log.exception("pair %d (%s, %s) failed", t.pair_id, t.file_x, t.file_y)
            row["error"] = f"{type(e).__name__}: {e}"
        else:
            fill_row(row, res, time.perf_counter() - t0, faith)
            part.maps.extend(map_rows(t.pair_id, res))
        part.pairs.append(row)
    part.seconds = time.perf_counter() - t_start
    return part


def empty_row(t: PairTask, methods: Sequence[str], faithfulness: bool) -> dict[str, Any]:
    """A pair's row before it runs: every column of ``core.batch.parquet.pairs_schema``."""
    row: dict[str, Any] = {"pair_id": t.pair_id, "file_x": t.file_x, "file_y": t.file_y, "fold": t.fold,
                           "label": None if t.same is None else (SAME if t.same else DIFFERENT), "decision": None,
                           "similarity": None, "threshold": None, "c_score": None, "correct": None, "runtime_s": None,
                           "error": None, "method_errors": None}  # fmt: skip
    for m in methods:
        row[f"runtime_{m}"] = row[f"passes_{m}"] = row[f"regions_{m}"] = None
    if faithfulness:
        for m in (*methods, RANDOM):
            for s in FAITH_SCORES:
                row[f"faith_{m}_{s}"] = None
    return row


def fill_row(row: dict[str, Any], res: PairResult, seconds: float, faith: dict[str, dict[str, float]]) -> None:
    row.update(similarity=float(res.similarity), threshold=float(res.threshold), c_score=res.c_score, runtime_s=seconds,
               decision=SAME if res.same else DIFFERENT)  # fmt: skip
    row["correct"] = None if row["label"] is None else row["decision"] == row["label"]
    errors = {e.method: str(e.error) for e in res.explanations if not e.ok}
    row["method_errors"] = json.dumps(errors) if errors else None
    for e in res.explanations:
        row[f"runtime_{e.method}"] = float(e.runtime_s)
        row[f"passes_{e.method}"] = needed_passes(e.scores, e.extras)
        row[f"regions_{e.method}"] = region_shares(e.extras.get("regions"))
    for m, scores in faith.items():
        for s in FAITH_SCORES:
            if f"faith_{m}_{s}" in row and scores.get(s) is not None and np.isfinite(scores[s]):
                row[f"faith_{m}_{s}"] = float(scores[s])


def needed_passes(scores: dict[str, Any], extras: dict[str, Any]) -> int | None:
    """The forward passes a method's maps cost: those it ran plus those it took from the
    perturbation cache (``extras["cached_from"]``), so the figure does not depend on what ran
    before it in the same process (a resumed run stores the same number)."""
    ran = scores.get("forward_passes")
    if ran is None:
        return None
    cached = (extras.get("cached_from") or {}).get("forward_passes") or 0
    return int(ran) + int(cached)


def region_shares(tables: Any) -> list[tuple[str, float]] | None:
    """Each facial region's share of the map's (positive) evidence, the mean of the two faces'
    region tables (``Runner``'s ``extras["regions"]``), as (region, share) items."""
    if not tables:
        return None
    got = [t for t in tables if t]
    if not got:
        return None
    shares: dict[str, list[float]] = {}
    for t in got:
        for r in t:
            shares.setdefault(str(r["region"]), []).append(float(r["similar"]))
    return [(k, float(np.mean(v))) for k, v in shares.items()]


def map_rows(pair_id: int, res: PairResult) -> list[dict[str, Any]]:
    """One row per method of a pair: both faces' maps as float16 bytes, its words and scores
    (its forward passes are the pairs table's ``passes_<method>``)."""
    out = []
    for e in res.explanations:
        maps = [np.asarray(m, np.float32) for m in e.maps]
        row: dict[str, Any] = {"pair_id": pair_id, "method": e.method, "label": e.label, "signed": bool(e.signed),
                               "height": None, "width": None, "map_a": None, "map_b": None, "text": json.dumps(list(e.text)),
                               "scores": json.dumps(jsonable({k: v for k, v in e.scores.items() if k != "forward_passes"})),
                               "display": json.dumps(jsonable(e.extras.get("display"))),
                               "runtime_s": float(e.runtime_s), "error": e.error}  # fmt: skip
        if e.ok and len(maps) == 2 and maps[0].shape == maps[1].shape and maps[0].ndim == 2:
            row["height"], row["width"] = int(maps[0].shape[0]), int(maps[0].shape[1])
            row["map_a"], row["map_b"] = (m.astype("<f2").tobytes() for m in maps)
        out.append(row)
    return out


def face_row(name: str, face: AlignedFace) -> dict[str, Any]:
    """A photo's aligned crop (lossless PNG) and geometry, to show its maps without the photo."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(face.image)).save(buf, format="PNG")
    return {"photo": name, "crop_png": buf.getvalue(), "landmarks": np.asarray(face.landmarks, np.float32).ravel().tolist(),
            "box": np.asarray(face.box, np.float32).ravel().tolist(), "transform": np.asarray(face.transform, np.float64).ravel().tolist(),
            "template": face.template}  # fmt: skip


def face_from_row(row: dict[str, Any]) -> AlignedFace:
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(row["crop_png"])).convert("RGB"))
    return AlignedFace(img, np.asarray(row["landmarks"], np.float32).reshape(-1, 2), np.asarray(row["box"], np.float32),
                       np.asarray(row["transform"], np.float64).reshape(2, 3), template=row.get("template") or "arcface")  # fmt: skip


def map_from_bytes(raw: bytes | None, height: int | None, width: int | None) -> np.ndarray | None:
    if raw is None or height is None or width is None:
        return None
    return np.frombuffer(raw, dtype="<f2").reshape(int(height), int(width)).astype(np.float32)
