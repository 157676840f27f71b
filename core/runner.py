"""The pipeline: image -> face -> aligned crop -> embedding -> decision and C-Score ->
explanations. ``Runner`` keeps the detector, the model and its calibration (each loaded
once, lazily) and is what the CLI and the UI call."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from .cancel import check_cancelled
from .data import LabelledPair, resolve
from .errors import CalibrationError, InvalidImageError, MethodRequirementError, XFVError
from .explainers.vit_arch import vit_module
from .faces.align import align_face
from .faces.detect import FaceDetector
from .io import ImageInput, load_image
from .registry import DEFAULT_MODEL, explainer_spec, get_embedder, needs_gallery
from .report import input_record, is_stream
from .types import AlignedFace, Detection, EmbedsFaces, Explanation, FaceEmbedder, FacePair, PairResult, alignment_of, torch_module
from .verify.calibration import Calibration, load_calibration

if TYPE_CHECKING:
    from .faces.regions import RegionMasks
    from .gallery import Gallery

log = logging.getLogger(__name__)

_DETECTORS: dict[str, FaceDetector] = {}


def default_detector(device: str | torch.device | None = "auto") -> FaceDetector:
    """One MTCNN per device for the whole process."""
    key = str(device)
    if key not in _DETECTORS:
        _DETECTORS[key] = FaceDetector(device=device)
    return _DETECTORS[key]


def model_capabilities(embedder: FaceEmbedder) -> frozenset[str]:
    """What a model offers to explainers: always black-box access; gradients when it is
    differentiable; 'vit' for transformer towers; 'clip_text' for concept bottlenecks."""
    caps = {"blackbox"}
    if embedder.differentiable:
        caps.add("gradients")
    module = torch_module(embedder)
    if module is not None and vit_module(module) is not None:  # what ViT-LRP and rollout will find
        caps.add("vit")
    if module is not None and callable(getattr(module, "concepts", None)) and hasattr(module, "descriptors"):
        caps.add("clip_text")  # a concept bottleneck: descriptors scored by CLIP's text tower
    return frozenset(caps)


class Runner:
    """Verification and explanation of face pairs with one model.

    ``threshold`` (on cosine similarity) overrides the calibration's; without a
    calibration file and without a threshold, ``verify`` raises ``CalibrationError``
    saying how to build one. The C-Score needs a calibration.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        device: str | torch.device | None = "auto",
        calibration: Calibration | str | Path | None = None,
        threshold: float | None = None,
        detector: FaceDetector | None = None,
        embedder: FaceEmbedder | None = None,
    ) -> None:
        self.model_name = model if embedder is None else embedder.name
        self.device = device
        self._embedder = embedder
        self._detector = detector
        self._calibration = calibration if isinstance(calibration, Calibration) else None
        self._calibration_path = calibration if isinstance(calibration, (str, Path)) else None
        self.threshold_override = threshold

    # -- lazily loaded parts -------------------------------------------------------------
    @property
    def embedder(self) -> FaceEmbedder:
        if self._embedder is None:
            self._embedder = get_embedder(self.model_name, self.device)
        return self._embedder

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = default_detector(self.device)
        return self._detector

    @property
    def calibration(self) -> Calibration | None:
        if self._calibration is None:
            try:
                self._calibration = load_calibration(self.model_name, self._calibration_path)
            except CalibrationError:
                if self.threshold_override is None:
                    raise
                return None
        return self._calibration

    def threshold(self) -> float:
        """The decision threshold on cosine similarity."""
        if self.threshold_override is not None:
            return float(self.threshold_override)
        cal = self.calibration
        if cal is None:  # pragma: no cover - without a threshold, a missing calibration raised above
            raise CalibrationError(f"no calibration for model '{self.model_name}'")
        return cal.threshold_similarity

    # -- faces -----------------------------------------------------------------------------
    def prepare(self, src: ImageInput | AlignedFace, name: str | None = None, size: int | None = None, face: int | None = None) -> AlignedFace:
        """Load, detect and align one face at the model's input size (or ``size``): the
        largest, or the ``face``-th of those found (0 = the largest; ``find_faces`` lists them)."""
        size = int(size or self.embedder.input_size)
        if isinstance(src, AlignedFace):
            from .faces.align import realign

            return realign(src, size, self._alignment())
        if name is None:
            name = str(src) if isinstance(src, (str, Path)) else "the image"
        check_cancelled()
        image = load_image(src, name=name)
        detection = self.detector.detect_one(image, name, face)
        return align_face(image, detection, size, template=self._alignment())

    def _alignment(self) -> str:
        """The 5-point template the model's crops are aligned to, without loading the model."""
        from .registry import model_spec

        if self._embedder is not None:
            return alignment_of(self._embedder)
        try:
            return model_spec(self.model_name).alignment
        except XFVError:  # an embedder given by object, or a name the registry does not know
            return alignment_of(self.embedder)

    def find_faces(self, src: ImageInput, name: str = "the image") -> tuple[np.ndarray, Detection]:
        """The image as read and every confident face in it, largest first (what ``face=``
        of ``prepare`` and ``explain`` indexes); ``NoFaceError`` if none."""
        image = load_image(src, name=name)
        return image, self.detector.detect_one(image, name)

    def explain_without_model(
        self, a: ImageInput | AlignedFace, b: ImageInput | AlignedFace, methods: Sequence[str], **knobs: Any
    ) -> list[Explanation]:
        """The methods of ``methods`` that need nothing of a model (``requires`` empty, e.g.
        ``geometry``), run without loading it: for when its weights are missing. Faces are
        aligned at the model's registered input size."""
        from .registry import model_spec

        size = self._embedder.input_size if self._embedder is not None else model_spec(self.model_name).input_size
        free = [m for m in methods if not explainer_spec(m).requires]
        if not free:
            return []
        pair = FacePair(self.prepare(a, _name(a, "the first image"), size), self.prepare(b, _name(b, "the second image"), size))
        return [self._run_method(m, pair, frozenset(), dict(knobs), model_free=True) for m in free]

    def prepare_pair(
        self, a: ImageInput | AlignedFace, b: ImageInput | AlignedFace, names: tuple[str, str] | None = None,
        faces: tuple[int | None, int | None] | None = None,
    ) -> FacePair:  # fmt: skip
        """Both faces; ``names`` are what messages call the two images (default: their paths,
        else "the first image" and "the second image"); ``faces``: which face of each (as
        ``prepare``'s ``face``; None: the largest)."""
        na, nb = names or (_name(a, "the first image"), _name(b, "the second image"))
        fa, fb = faces or (None, None)
        return FacePair(self.prepare(a, na, face=fa), self.prepare(b, nb, face=fb))

    @torch.no_grad()
    def embed(self, faces: Sequence[AlignedFace], batch_size: int | None = None) -> np.ndarray:
        """L2-normalised embeddings ``(N, D)`` of aligned faces, as float32 numpy."""
        emb = self.embedder
        crops = [f.image for f in faces]
        if isinstance(emb, EmbedsFaces):
            out = emb.embed_faces(crops, batch_size)
        else:
            out = emb.embed(emb.preprocess(crops))
        return out.detach().float().cpu().numpy()

    # -- verification ----------------------------------------------------------------------
    def verify(self, a: ImageInput | AlignedFace | FacePair, b: ImageInput | AlignedFace | None = None) -> PairResult:
        """Decision, similarity, threshold and C-Score for a pair of images or faces."""
        return self.explain(a, b, methods=())

    def explain(
        self,
        a: ImageInput | AlignedFace | FacePair,
        b: ImageInput | AlignedFace | None = None,
        methods: Iterable[str] = (),
        progress: Callable[[float, str], Any] | None = None,
        embeddings: tuple[np.ndarray, np.ndarray] | None = None,
        names: tuple[str, str] | None = None,
        faces: tuple[int | None, int | None] | None = None,
        **knobs: Any,
    ) -> PairResult:
        """Verify the pair, then run each explanation method; a failing method fills its
        ``Explanation.error`` and the others still run. ``embeddings``: the two faces'
        unit embeddings when already computed (a batch embeds each photo once); ``names``:
        what messages and notes call the two images (e.g. the page's "photo A", "photo B");
        ``faces``: which face of each photo (``prepare``'s ``face``; None: the largest).
        ``params["inputs"]`` records each input's file name and SHA-256 (``input_record``)."""
        methods = list(methods)  # may be a one-shot iterable
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        emb = self.embedder  # a missing model is reported before any image work
        timings["load_model"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        sources = list(a) if isinstance(a, FacePair) else [a, b]
        streams = [input_record(x) if is_stream(x) else None for x in sources]  # read before loading consumes them
        if isinstance(a, FacePair):
            pair = a
        elif b is None:
            raise InvalidImageError("the second image is missing: give two images (or faces), or one FacePair")
        else:
            pair = self.prepare_pair(a, b, names, faces)
        timings["detect_align"] = time.perf_counter() - t0
        inputs = [rec if rec is not None else input_record(x) for rec, x in zip(streams, sources, strict=True)]
        t0 = time.perf_counter()
        ea, eb = self.embed([pair.a, pair.b]) if embeddings is None else (np.asarray(embeddings[0]), np.asarray(embeddings[1]))
        timings["embed"] = time.perf_counter() - t0
        sim = float(np.clip(np.dot(ea, eb), -1.0, 1.0))
        thr = self.threshold()
        same = sim >= thr
        cal = self.calibration if self.threshold_override is None else None
        c_score = float(cal.cscore(1.0 - sim)) if cal is not None else None
        notes = [f"{label}: {f.note}" for label, f in zip(names or ("first image", "second image"), pair, strict=False) if f.note]
        result = PairResult(
            pair=pair, similarity=sim, threshold=thr, same=bool(same), c_score=c_score,
            model=emb.name, weights_hash=emb.weights_hash(), notes=notes, timings=timings,
            params={"device": str(emb.device), "input_size": emb.input_size,
                    "calibration": None if cal is None else cal.source.get("data"),
                    "methods": methods, **{k: v for k, v in knobs.items() if _jsonable(v)}, "inputs": inputs,
                    **({"faces": [None if f is None else int(f) for f in faces]} if faces and any(f is not None for f in faces) else {})},
        )  # fmt: skip
        caps = model_capabilities(emb)
        if isinstance(knobs.get("gallery"), (str, Path)) and any(needs_gallery(m) for m in methods):
            knobs = {**knobs, "gallery": self.gallery(knobs["gallery"])}
        knobs.setdefault("decision_threshold", thr)
        regions: list[RegionMasks | None] | None = None
        n = max(1, len(methods))
        for i, m in enumerate(methods):
            check_cancelled()  # a cancelled request stops between methods too (and within them, per batch)
            method_knobs = dict(knobs)
            if progress is not None:
                progress(i / n, f"running {m}")
                method_knobs["progress"] = _sub_progress(progress, i / n, 1 / n, m)
            exp = self._run_method(m, pair, caps, method_knobs)
            if exp.ok and exp.maps:
                if regions is None:
                    regions = self._region_masks(pair, knobs.get("landmarks", "auto"))
                _add_region_table(exp, regions)
            result.explanations.append(exp)
        if progress is not None and methods:
            progress(1.0, "done")
        return result

    def _run_method(self, name: str, pair: FacePair, caps: frozenset[str], knobs: dict[str, Any], model_free: bool = False) -> Explanation:
        t0 = time.perf_counter()
        try:
            spec = explainer_spec(name)
            missing = spec.requires - caps
            if missing:
                raise MethodRequirementError(f"{spec.label} needs {', '.join(sorted(missing))}, which model '{self.embedder.name}' does not offer")
            explainer = spec.factory()
            try:
                # None reaches only explainers that require nothing of a model (geometry takes None)
                exp = explainer.explain(pair, cast(FaceEmbedder, None) if model_free else self.embedder, **knobs)
            finally:
                explainer.close()
        except XFVError as e:
            return Explanation(method=name, label=_label(name), error=str(e), runtime_s=time.perf_counter() - t0)
        except Exception as e:  # one method's bug must not hide the others
            log.exception("explanation method %s failed", name)
            return Explanation(method=name, label=_label(name), error=f"{type(e).__name__}: {e}", runtime_s=time.perf_counter() - t0)
        exp.runtime_s = time.perf_counter() - t0
        return exp

    @staticmethod
    def _region_masks(pair: FacePair, landmarks: str) -> list[RegionMasks | None]:
        from .faces.regions import region_masks

        out: list[RegionMasks | None] = []
        for face in pair:
            try:
                out.append(region_masks(face, landmarks))
            except XFVError as e:  # no region table is better than no explanation
                log.warning("no facial regions: %s", e)
                out.append(None)
        return out

    def faithfulness(self, result: PairResult, fill: str = "black", seed: int = 0) -> dict[str, dict[str, float]]:
        """Deletion/insertion scores of each explanation of ``result`` on its own pair, and of
        a random map (key ``"random"``), from ``core.evaluate.faithfulness``: the deletion
        area is small when hiding the pixels a map ranks first changes the decision fast."""
        from .evaluate.faithfulness import RANDOM, pair_faithfulness, random_pair_faithfulness

        emb = self.embed([result.pair.a, result.pair.b])
        out: dict[str, dict[str, float]] = {}
        for e in result.explanations:
            if e.ok and len(e.maps) == 2:
                out[e.method] = pair_faithfulness(self.embedder, result.pair, e.maps, e.signed, result.threshold, fill=fill,
                                                  seed=seed, embeddings=emb, method=e.method).scores()  # fmt: skip
        if out:
            out[RANDOM] = random_pair_faithfulness(self.embedder, result.pair, result.threshold, fill=fill, seed=seed, embeddings=emb).scores()
        return out

    def gallery(self, source: str | Path, images: str | Path | None = None, progress: bool = False) -> Gallery:
        """The embedded gallery of a folder of identity sub-folders or an identities CSV
        (``core.gallery.Gallery``), embedded once per model and cached."""
        from .gallery import load_gallery

        return load_gallery(self, source, images, progress)

    def forward_passes(self, methods: Iterable[str], **knobs: Any) -> dict[str, int]:
        """What a set of methods costs on one pair, in forward passes of the model, before
        running anything (no model is loaded): ``{method: n, ..., "total": n}``."""
        from .registry import forward_passes, model_spec

        size = self._embedder.input_size if self._embedder is not None else model_spec(self.model_name).input_size
        return forward_passes(list(methods), int(size), **knobs)

    # -- datasets --------------------------------------------------------------------------
    def score_pairs(
        self,
        pairs: Sequence[LabelledPair],
        images: str | Path | None,
        csv_path: str | Path,
        progress: bool = True,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[LabelledPair, str]]]:
        """Cosine similarities and labels of every pair whose two images give a face;
        the pairs that could not be scored come back with the reason. Each image is
        detected and embedded once, however many pairs it is in."""
        from tqdm import tqdm

        files = sorted({p.file_x for p in pairs} | {p.file_y for p in pairs})
        faces: dict[str, AlignedFace] = {}
        errors: dict[str, str] = {}
        for f in tqdm(files, desc="faces", unit="img", disable=not progress):
            path = resolve(images, f, csv_path)
            try:
                faces[f] = self.prepare(path, str(path))
            except XFVError as e:
                errors[f] = str(e)
                log.warning("%s", e)
        names = list(faces)
        emb = self.embed([faces[n] for n in names], batch_size) if names else np.zeros((0, 1))
        index = {n: i for i, n in enumerate(names)}
        sims, labels, failed = [], [], []
        for p in pairs:
            if p.file_x in index and p.file_y in index:
                sims.append(float(emb[index[p.file_x]] @ emb[index[p.file_y]]))
                labels.append(p.same)
            else:
                failed.append((p, errors.get(p.file_x) or errors.get(p.file_y) or "missing"))
        return np.asarray(sims), np.asarray(labels, dtype=bool), failed


def _add_region_table(exp: Explanation, masks: list[RegionMasks | None]) -> None:
    """The explainability table of each face's map over its facial regions, and its
    sentences (both faces' when their maps differ, one set when the map is shared)."""
    import cv2

    from .text.regions import region_sentences, region_table

    tables: list[list[dict[str, Any]] | None] = []
    shared = len(exp.maps) == 2 and np.array_equal(exp.maps[0], exp.maps[1])
    for i, (m, rm) in enumerate(zip(exp.maps, masks, strict=False)):
        if rm is None:
            tables.append(None)
            continue
        if m.shape != rm.labels.shape:
            m = cv2.resize(m.astype(np.float32), rm.labels.shape[::-1], interpolation=cv2.INTER_LINEAR)
        rows = region_table(m, rm, signed=exp.signed)
        tables.append([r.to_dict() for r in rows])
        if shared and i == 1:
            continue
        who = "the map shared by both faces" if shared else ("the first face's map" if i == 0 else "the second face's map")
        exp.text.extend(region_sentences(rows, method_label=who, signed=exp.signed))
    exp.extras["regions"] = tables
    exp.extras["region_landmarks"] = [None if rm is None else rm.source for rm in masks]


def _sub_progress(progress: Callable[[float, str], Any], start: float, width: float, method: str) -> Callable[[float, str], Any]:
    """A method's own progress (0-1) mapped into its slice of the whole run."""

    def report(frac: float, message: str) -> None:
        progress(start + width * min(1.0, max(0.0, frac)), f"{method}: {message}")

    return report


def _label(method: str) -> str:
    """A method's registry label, or its key when it is not registered."""
    try:
        return explainer_spec(method).label
    except XFVError:
        return method


def _name(src: Any, default: str) -> str:
    return str(src) if isinstance(src, (str, Path)) else default


def _jsonable(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, type(None), list, tuple, dict))
