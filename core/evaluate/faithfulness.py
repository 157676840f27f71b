"""Faithfulness of explanation maps for face verification: how much the similarity and the
decision change when the pixels a map ranks highest are hidden (deletion) or are the only
ones shown (insertion), always against a baseline of random maps ("random").

Protocol (one pair, one set of maps)
------------------------------------
A pair has a probe face ``a`` and a reference face ``b``, one map per face (``maps[0]`` for
``a``, ``maps[1]`` for ``b``; float32 ``(S, S)`` at crop size, resized with bilinear
interpolation to the model's ``input_size`` when it differs), a ``signed`` flag, a decision
threshold ``thr`` on cosine similarity, clean embeddings ``e_a``, ``e_b``, the clean
similarity ``s0 = e_a . e_b`` and the decision ``accept = s0 >= thr``.

* Both directions are evaluated: probe ``a`` against reference ``b`` with map 0, and probe
  ``b`` against reference ``a`` with map 1. Each is a *probe*; the reference stays clean.
* Relevance of a probe's pixels: the map itself when the decision is accept; when it is
  reject and the map is signed, the negated map (the most dissimilar evidence first, as
  Correia et al. treat negative decisions); an unsigned map is used as it is.
* Pixel order: pixels sorted by relevance, descending; ties are broken by a seeded random
  permutation (``np.random.default_rng(seed)``), so a constant map gives a random order
  that is fixed by the seed.
* Fractions: by default ``np.linspace(0, 1, 11)`` (FAME's 11 steps, 0-100 %), always with
  ``top_share`` (default 0.2) added; sorted, unique. At fraction ``f`` the first
  ``round(f * N)`` pixels of the order are concerned (``N = S * S``).
* Deletion at ``f``: those pixels are hidden (mask 1). Insertion at ``f``: every pixel is
  hidden except those. Hidden pixels take ``fill`` (default ``black`` = 0, as the SDD paper
  sets them to 0; any ``perturb.fill_image`` value). Perturbed probes are embedded with a
  ``perturb.Perturber``; ``s_f`` is the perturbed probe's embedding . the clean reference's.
  A mask that hides nothing (deletion at 0, insertion at 1) takes the clean probe
  embedding, so those points equal ``s0`` exactly.
* Decision margin curve: ``y_f = sign * (s_f - thr)``, ``sign = +1`` if accept else ``-1``.
  *Deletion area* = ``np.trapezoid(y, fractions)`` on the deletion curve: a faithful map
  makes the margin fall fast, so the area is small (lower is better). *Insertion area* =
  the same on the insertion curve: a faithful map restores the decision fast, so the area
  is large (higher is better). Per pair, both are the mean of the two probes.
* Confidence drop and prediction change (Explainable Face Recognition via Improved
  Localization, the SDD paper: hide the top 20 %): for accepted probes with ``s0 > 0``,
  ``drop = max(0, s0 - s_top) / s0 * 100`` with ``s_top`` the deletion similarity at
  ``top_share``, averaged over those probes (NaN when there is none; higher is better).
  Prediction change = the percentage of all probes whose decision ``s_top >= thr``
  differs from the clean decision (higher is better).

Dataset figures (``FaithfulnessReport``)
----------------------------------------
* ``deletion_auc``, ``insertion_auc``, ``prediction_change_pct``: means over all probes;
  ``confidence_drop_pct``: mean over all accepted probes of all pairs.
* Recall / TNR (Correia et al., the ViT paper). ``recall(f)``: of the genuine-label pairs
  the clean model accepts (true positives), the share of probes (both directions count)
  still accepted with the probe deletion-masked at ``f``. ``TNR(f)``: of the
  impostor-label pairs the clean model rejects (true negatives), the share still rejected
  when *both* faces are deletion-masked at ``f``, each by its own relevance order
  (``masked a . masked b < thr``). ``recall_auc`` and ``tnr_auc`` are trapezoid areas over
  the fractions: a faithful map makes them fall fast (lower is better).
* FAME (Zhang & Günther, 2026, following CorrRISE): the threshold is the EER threshold of
  the clean similarities of the method's own pairs (``eer_threshold``: the ROC threshold
  minimising ``|FAR - FRR|``). At each fraction, verification accuracy over all probes
  (both directions) with the probe deletion-masked (resp. insertion-masked) and the clean
  reference. The normalised AUC is the trapezoid area of the accuracy over the fractions,
  divided by the span of the fractions (1 for the default 0-1 range), so it lies in
  [0, 1]. Deletion nAUC: lower is better; insertion nAUC: higher is better. NaN when the
  set lacks genuine or impostor pairs.
* Random baseline: one random map per face, a "random CAM" as in the SDD paper (uniform
  values on a ``size // 16`` lattice, SFace's 7 x 7 at 112 px, bilinearly upsampled; from
  ``np.random.default_rng([seed, pair_index, face_index])``, unsigned), evaluated exactly
  like a method and reported as method ``random``, always last. A faithful method beats
  it. (Per-pixel noise is not used: hiding scattered pixels wrecks a CNN's input more than
  hiding any region, so it would be a baseline no map can beat.)

``FaithfulnessReport.to_csv(path)`` writes the summary rows to ``path`` and the long-format
curves (method, curve, fraction, value) to ``curves_csv_path(path)``: ``path`` with
``_curves`` before its suffix.
"""

from __future__ import annotations

import csv
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from ..data import LabelledPair, escape_cell, resolve
from ..errors import XFVError
from ..explainers.perturb import check_fill, embed_faces
from ..types import AlignedFace, FacePair
from .probes import (  # noqa: F401 (re-exported: the protocol's parts are used from here)
    CURVE_NAMES,
    FAME_FRACTIONS,
    RANDOM,
    ROW_KEYS,
    TOP_SHARE,
    Fill,
    PairFaithfulness,
    _mean,
    _trapezoid,
    curve_masks,
    eer_threshold,
    pair_faithfulness,
    pixel_order,
    random_maps,
    random_pair_faithfulness,
    relevance_of,
    resolve_fractions,
)

if TYPE_CHECKING:
    from ..runner import Runner

log = logging.getLogger(__name__)


@dataclass
class PairRecord:
    """One scored pair of a data set, for one method."""

    index: int
    file_x: str
    file_y: str
    same: bool  # the label
    result: PairFaithfulness


def method_figures(records: Sequence[PairRecord], fractions: np.ndarray, top_share: float) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The summary figures and the curves of one method's records (see the module docstring)."""
    fr = np.asarray(fractions, dtype=np.float64)
    nan_curve = np.full(len(fr), np.nan)
    probes = [p for r in records for p in r.result.probes]
    labels = np.array([r.same for r in records for _ in (0, 1)], dtype=bool)
    span = float(fr[-1] - fr[0]) if len(fr) > 1 else float("nan")
    curves: dict[str, np.ndarray] = {}
    if probes:
        curves["deletion_similarity"] = np.mean([p.deletion for p in probes], axis=0)
        curves["insertion_similarity"] = np.mean([p.insertion for p in probes], axis=0)
    else:
        curves["deletion_similarity"] = curves["insertion_similarity"] = nan_curve
    tp = [p for r in records if r.same and r.result.accept for p in r.result.probes]
    curves["recall"] = np.mean([p.deletion >= p.thr for p in tp], axis=0) if tp else nan_curve
    tn = [r.result for r in records if not r.same and not r.result.accept]
    curves["tnr"] = np.mean([res.both_masked_similarity() < res.threshold for res in tn], axis=0) if tn else nan_curve
    eer_thr = eer_threshold(np.array([r.result.similarity for r in records]), np.array([r.same for r in records], dtype=bool))
    if np.isnan(eer_thr):
        curves["fame_deletion_accuracy"] = curves["fame_insertion_accuracy"] = nan_curve
    else:
        dele = np.array([p.deletion for p in probes])
        ins = np.array([p.insertion for p in probes])
        curves["fame_deletion_accuracy"] = ((dele >= eer_thr) == labels[:, None]).mean(0)
        curves["fame_insertion_accuracy"] = ((ins >= eer_thr) == labels[:, None]).mean(0)
    drops = [d for p in probes if not np.isnan(d := p.confidence_drop_at(top_share))]
    row = {
        "n_pairs": len(records),
        "deletion_auc": _mean([p.deletion_area for p in probes]),
        "insertion_auc": _mean([p.insertion_area for p in probes]),
        "confidence_drop_pct": _mean(drops),
        "prediction_change_pct": 100.0 * _mean([p.decision_changed_at(top_share) for p in probes]),
        "recall_auc": _trapezoid(curves["recall"], fr),
        "tnr_auc": _trapezoid(curves["tnr"], fr),
        "fame_deletion_nauc": _trapezoid(curves["fame_deletion_accuracy"], fr) / span,
        "fame_insertion_nauc": _trapezoid(curves["fame_insertion_accuracy"], fr) / span,
        "eer_threshold": eer_thr,
    }
    return row, curves


def curves_csv_path(path: str | Path) -> Path:
    """Where ``to_csv(path)`` writes the long curves: ``path`` with ``_curves`` before the suffix."""
    p = Path(path)
    return p.with_name(f"{p.stem}_curves{p.suffix or '.csv'}")


# Table columns: key, header, width, format, direction (True: higher is more faithful).
_COLUMNS: tuple[tuple[str, str, int, str, bool | None], ...] = (
    ("n_pairs", "pairs", 6, "d", None),
    ("deletion_auc", "deletion", 9, "+.4f", False),
    ("insertion_auc", "insertion", 9, "+.4f", True),
    ("confidence_drop_pct", "drop %", 7, ".1f", True),
    ("prediction_change_pct", "change %", 8, ".1f", True),
    ("recall_auc", "recall", 7, ".3f", False),
    ("tnr_auc", "TNR", 7, ".3f", False),
    ("fame_deletion_nauc", "FAME del", 8, ".3f", False),
    ("fame_insertion_nauc", "FAME ins", 8, ".3f", True),
    ("n_failed", "failed", 6, "d", None),
)


@dataclass
class FaithfulnessReport:
    """Per method, the faithfulness records of every pair it explained, and what failed."""

    methods: list[str]
    fractions: np.ndarray
    top_share: float = TOP_SHARE
    records: dict[str, list[PairRecord]] = field(default_factory=dict)
    n_failed: dict[str, int] = field(default_factory=dict)  # explanations that failed, per method
    failed: list[tuple[LabelledPair, str]] = field(default_factory=list)  # pairs without two faces

    @property
    def method_names(self) -> list[str]:
        """The methods in the given order, then the ``random`` baseline."""
        return [m for m in self.methods if m != RANDOM] + [RANDOM]

    def _figures(self, method: str) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        return method_figures(self.records.get(method, []), self.fractions, self.top_share)

    def rows(self) -> list[dict[str, Any]]:
        """One summary row per method (keys ``ROW_KEYS``), ``random`` last."""
        out = []
        for m in self.method_names:
            row, _ = self._figures(m)
            out.append({"method": m, **row, "n_failed": int(self.n_failed.get(m, 0))})
        return out

    def curves(self) -> list[dict[str, Any]]:
        """Long-format curve points: method, curve (``CURVE_NAMES``), fraction, value."""
        out: list[dict[str, Any]] = []
        for m in self.method_names:
            _, curves = self._figures(m)
            for name in CURVE_NAMES:
                out.extend(
                    {"method": m, "curve": name, "fraction": float(f), "value": float(v)} for f, v in zip(self.fractions, curves[name], strict=True)
                )
        return out

    def to_csv(self, path: str | Path) -> tuple[Path, Path]:
        """Write the rows to ``path`` and the curves to ``curves_csv_path(path)``; both paths."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        cpath = curves_csv_path(path)
        for p, keys, rows in ((path, ROW_KEYS, self.rows()), (cpath, ("method", "curve", "fraction", "value"), self.curves())):
            with open(p, "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=list(keys))
                w.writeheader()
                w.writerows({k: escape_cell(v) for k, v in r.items()} for r in rows)  # text cells never run as formulas
        return path, cpath

    def table(self) -> str:
        """A fixed-width text table: a header line, a line with the better direction of each
        column, one line per method (``random`` last) and a legend."""
        rows = self.rows()
        mw = max([len("method"), *(len(r["method"]) for r in rows)])
        head = f"{'method':<{mw}}" + "".join(f" {h:>{w}}" for _, h, w, _, _ in _COLUMNS)
        arrows = f"{'better':<{mw}}" + "".join(f" {'' if d is None else ('↑' if d else '↓'):>{w}}" for _, _, w, _, d in _COLUMNS)
        lines = [head, arrows]
        for r in rows:
            cells = []
            for key, _, w, fmt, _ in _COLUMNS:
                v = r[key]
                cells.append(f" {'n/a' if isinstance(v, float) and np.isnan(v) else format(v, fmt):>{w}}")
            lines.append(f"{r['method']:<{mw}}" + "".join(cells))
        pct = f"{self.top_share * 100:g} %"
        lines.append(
            f"↓ lower is more faithful, ↑ higher. deletion / insertion: area under the decision margin curve; drop % / change %: "
            f"confidence drop / decisions changed with the top {pct} hidden;"
        )
        lines.append(
            "recall / TNR: area under the curve as the most relevant pixels are hidden; FAME: normalised area under the accuracy "
            f"curve at the EER threshold. '{RANDOM}' (random CAM-sized blobs) is the baseline: a faithful method beats it."
        )
        return "\n".join(line.rstrip() for line in lines)


class _Common(TypedDict):
    """The knobs every pair's measurement of ``faithfulness`` shares."""

    fractions: np.ndarray
    top_share: float
    fill: Fill
    seed: int
    batch_size: int | None


def faithfulness(
    runner: Runner,
    pairs: Sequence[LabelledPair],
    images: str | Path | None,
    csv_path: str | Path,
    methods: Sequence[str],
    *,
    fractions: Sequence[float] | np.ndarray | None = None,
    top_share: float = TOP_SHARE,
    fill: Fill = "black",
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool = True,
    **knobs: Any,
) -> FaithfulnessReport:
    """Run ``methods`` on every labelled pair (each image detected and aligned once with
    ``runner.prepare``, embedded once) and measure the faithfulness of their maps and of
    the random baseline. ``knobs`` (preset, gallery, ...) pass through to
    ``runner.explain``, with ``seed`` and ``batch_size``; the decision threshold is the
    result's. Pairs whose images give no face go to ``failed``; failed explanations are
    logged and counted per method."""
    from tqdm import tqdm

    check_fill(fill)
    fr = resolve_fractions(fractions, top_share)
    methods = list(methods)
    if RANDOM in methods:
        log.warning("'%s' is the baseline and always included; not run as a method", RANDOM)
        methods = [m for m in methods if m != RANDOM]
    report = FaithfulnessReport(methods=methods, fractions=fr, top_share=float(top_share))
    report.records = {m: [] for m in report.method_names}
    report.n_failed = dict.fromkeys(report.method_names, 0)
    explain_knobs = {k: v for k, v in {"seed": seed, "batch_size": batch_size, **knobs}.items() if v is not None}
    embedder = runner.embedder
    faces: dict[str, AlignedFace | str] = {}
    clean: dict[str, np.ndarray] = {}
    common: _Common = {"fractions": fr, "top_share": top_share, "fill": fill, "seed": seed, "batch_size": batch_size}
    bar = tqdm(pairs, desc="pairs", unit="pair", disable=not progress, file=sys.stderr)
    for i, p in enumerate(bar):
        bar.set_postfix_str(f"{Path(p.file_x).name} / {Path(p.file_y).name}", refresh=False)
        for f in (p.file_x, p.file_y):
            if f not in faces:
                try:
                    face = runner.prepare(resolve(images, f, csv_path), f)
                except XFVError as e:
                    faces[f] = str(e)
                    continue
                faces[f] = face
                clean[f] = embed_faces(embedder, [face.image], batch_size)[0].numpy()
        a, b = faces[p.file_x], faces[p.file_y]
        if isinstance(a, str) or isinstance(b, str):
            why = a if isinstance(a, str) else str(b)
            log.warning("left out %s / %s: %s", p.file_x, p.file_y, why)
            report.failed.append((p, why))
            continue
        pair = FacePair(a, b)
        emb = np.stack([clean[p.file_x], clean[p.file_y]])
        res = runner.explain(pair, methods=methods, **explain_knobs)
        thr = float(res.threshold)
        for exp in res.explanations:
            if exp.method not in report.records:
                continue
            if not exp.ok or len(exp.maps) != 2:
                why = str(exp.error) if not exp.ok else f"{len(exp.maps)} maps instead of 2"
                log.warning("%s failed on %s / %s: %s", exp.method, p.file_x, p.file_y, why)
                report.n_failed[exp.method] += 1
                continue
            pf = pair_faithfulness(embedder, pair, exp.maps, exp.signed, thr, embeddings=emb, method=exp.method, **common)
            report.records[exp.method].append(PairRecord(i, p.file_x, p.file_y, bool(p.same), pf))
        pf = random_pair_faithfulness(embedder, pair, thr, pair_index=i, embeddings=emb, **common)
        report.records[RANDOM].append(PairRecord(i, p.file_x, p.file_y, bool(p.same), pf))
    bar.close()
    return report
