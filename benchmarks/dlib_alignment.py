"""Which crops should dlib's ResNet descriptor see: dlib's own face chip, or our MTCNN's five
points warped onto a template of that chip? Measures both and prints the template.

1. For every photo of ``../shared/data/faces`` where dlib's HOG detector and MTCNN each find
   exactly one face, maps MTCNN's five points into the 150 px chip that dlib's 5-point shape
   predictor gives (``get_face_chip_details``, padding 0.25, and dlib's chip mapping: the
   chip's corners are the rectangle's, rotated by its angle); their mean is the ``dlib``
   template of ``core.faces.align`` (the spread is printed too).
2. Verification on ``deepface/identities.csv`` (every pair it implies) and
   ``deepface/pairs.csv``: dlib's own pipeline (HOG, shape predictor, chip, dlib's
   descriptor) against ours (MTCNN, the template, the torch port): ROC AUC, EER and the
   best accuracy, with each pipeline's seconds per face.

    python benchmarks/dlib_alignment.py [--data ../shared/data/faces]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import Runner
from core.data import pairs_from_identities, read_identities, read_pairs
from core.evaluate.verification import eer, roc_auc
from core.io import load_image
from core.models.dlib_resnet import find_dat


def chip_mapping(details) -> np.ndarray:
    """The (3, 2) affine map (rows: x, y, 1) from image to chip coordinates, as dlib's
    ``get_mapping_to_chip``: the rectangle's corners, rotated about its centre, go to the chip's."""
    r, a = details.rect, details.angle
    cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2

    def rot(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        return cx + math.cos(a) * dx - math.sin(a) * dy, cy + math.sin(a) * dx + math.cos(a) * dy

    src = np.array([rot(r.left(), r.top()), rot(r.right(), r.top()), rot(r.right(), r.bottom())])
    dst = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]], float)
    return np.linalg.solve(np.hstack([src, np.ones((3, 1))]), dst)


def best_accuracy(s: np.ndarray, y: np.ndarray) -> float:
    return max(float(((s >= t) == y).mean()) for t in np.unique(s))


def main() -> int:
    import dlib

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"))
    args = ap.parse_args()
    data = Path(args.data)
    models = find_dat().parent
    detector = dlib.get_frontal_face_detector()
    shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    rec = dlib.face_recognition_model_v1(str(find_dat()))
    ours = Runner(model="dlib_resnet", device="cpu")
    sface = Runner(device="cpu")

    points = []
    for path in sorted(p for p in data.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        try:
            img = load_image(path)
            dets = detector(img, 1)
            if len(dets) != 1:
                continue
            mt = sface.detector.detect_one(img, str(path)).face.landmarks
        except Exception:
            continue
        q = np.hstack([mt, np.ones((5, 1))]) @ chip_mapping(dlib.get_face_chip_details(shape(img, dets[0]), 150, 0.25))
        if ((q > 0) & (q < 150)).all():
            points.append(q)
    pts = np.array(points)
    print(f"template from {len(pts)} faces (mean; spread in px):")
    for (x, y), (sx, sy) in zip(pts.mean(0), pts.std(0), strict=True):
        print(f"  [{x:7.3f}, {y:7.3f}]   +- ({sx:.2f}, {sy:.2f})")

    deepface = data / "deepface"
    ident = read_identities(deepface / "identities.csv")
    files = sorted(set(ident) | {f for p in read_pairs(deepface / "pairs.csv") for f in (p.file_x, p.file_y)})
    emb_dlib, emb_ours, t_dlib, t_ours = {}, {}, 0.0, 0.0
    for f in files:
        img = load_image(deepface / f)
        t0 = time.perf_counter()
        dets = detector(img, 1)
        if dets:
            big = max(dets, key=lambda d: d.area())
            emb_dlib[f] = np.array(rec.compute_face_descriptor(dlib.get_face_chip(img, shape(img, big), size=150, padding=0.25)))
        t1 = time.perf_counter()
        emb_ours[f] = ours.embedder.embed_faces([ours.prepare(deepface / f).image])[0].numpy().astype(float)
        t_dlib, t_ours = t_dlib + (t1 - t0), t_ours + (time.perf_counter() - t1)
    print(f"\n{len(files)} photos; dlib's pipeline found a face in {len(emb_dlib)}; seconds per face: "
          f"dlib's own {t_dlib / len(files):.3f}, MTCNN + torch port {t_ours / len(files):.3f} (2-core CPU)")  # fmt: skip
    print(f"{'pairs':<28} {'pipeline':<28} {'n':>5} {'failed':>6} {'AUC':>7} {'EER':>6} {'best acc':>8}")
    for name, pairs in (("identities.csv (all pairs)", pairs_from_identities(ident)), ("pairs.csv", read_pairs(deepface / "pairs.csv"))):
        for label, emb in (("dlib's own chip", emb_dlib), ("MTCNN + dlib template", emb_ours)):
            ok = [p for p in pairs if p.file_x in emb and p.file_y in emb]
            a = np.array([emb[p.file_x] for p in ok])
            b = np.array([emb[p.file_y] for p in ok])
            s = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            y = np.array([p.same for p in ok])
            print(f"{name:<28} {label:<28} {len(ok):>5} {len(pairs) - len(ok):>6} {roc_auc(s, y):7.4f} {eer(s, y):6.3f} {best_accuracy(s, y):8.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
