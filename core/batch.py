"""A whole set of pairs at once: verification and explanation maps of every pair of a pairs
CSV, an identities CSV or a folder of identity sub-folders, as a table to sort and filter,
and a folder that reopens any row's maps later without recomputing them.

This is the batch path behind ``python -m core batch`` and the app's Explore tab (the
"explorer" and "viewer" of the X-Map web platform of Knoche et al., for a user's own
data). Each image is detected and aligned once however many pairs it is in; a pair that
fails (no face, unreadable file) becomes a row with its error and the batch goes on.

The output folder holds ``pairs.csv`` (one row per pair), ``batch.json`` (what was run
and the summary) and ``pairs/<index>.json`` per pair: the JSON audit report of
``core.report.report_json`` (exact float32 maps, lossless crops) plus the row and the
faces' geometry, from which ``pair_result`` rebuilds the ``PairResult``.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .data import LabelledPair, _parse_same, _read_rows, read_labelled_pairs, resolve
from .errors import DataError, XFVError
from .types import AlignedFace, Explanation, FacePair, PairResult, jsonable

log = logging.getLogger(__name__)

#: The columns of ``pairs.csv`` before the per-method runtimes (``runtime_<method>``).
COLUMNS = ("index", "file_x", "file_y", "label", "similarity", "threshold", "decision", "correct", "c_score", "runtime_s", "error",
           "method_errors")  # fmt: skip
SAME, DIFFERENT = "same", "different"

Progress = Callable[[float, str], Any]


@dataclass(frozen=True)
class BatchPair:
    """One pair to run; ``same`` is None when the pairs file gives no label."""

    file_x: str
    file_y: str
    same: bool | None = None


@dataclass
class BatchRow:
    """One pair's line of the table. ``label`` is the truth (``"same"``/``"different"``, or
    None when unknown), ``decision`` the model's; ``correct`` is None when either is
    missing. ``runtimes`` are seconds per explanation method; ``error`` is set when the pair
    could not be compared (the other fields then stay None) and ``method_errors`` holds the
    methods that failed on a pair that was compared."""

    index: int
    file_x: str
    file_y: str
    label: str | None = None
    similarity: float | None = None
    threshold: float | None = None
    decision: str | None = None
    correct: bool | None = None
    c_score: float | None = None
    runtime_s: float | None = None
    runtimes: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    method_errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (*COLUMNS[:-1], "runtimes", "method_errors")}


@dataclass
class BatchResult:
    """The rows of a batch, what was run, and where it was saved (``out``, or None)."""

    rows: list[BatchRow]
    methods: list[str]
    model: str | None = None
    preset: str | None = None
    source: str | None = None
    out: Path | None = None
    failed_files: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, index: int) -> BatchRow:
        """The row with this ``index`` (not its position after sorting or filtering)."""
        for r in self.rows:
            if r.index == index:
                return r
        raise DataError(f"no pair {index} in this batch (pairs 0 to {len(self.rows) - 1})")

    def summary(self) -> dict[str, Any]:
        return batch_summary(self.rows, self.methods)


def batch_summary(rows: Sequence[BatchRow], methods: Sequence[str] = ()) -> dict[str, Any]:
    """Counts and means of a set of rows: ``n_pairs``, ``n_compared``, ``n_errors``,
    ``n_labelled`` (compared pairs with a label), ``n_correct``, ``accuracy`` (None without
    labelled pairs), ``n_same`` / ``n_different`` decisions, ``mean_c_score`` (None without
    C-Scores), ``mean_similarity``, the mean runtime of each method and the number of pairs
    on which a method failed."""
    done = [r for r in rows if r.ok]
    labelled = [r for r in done if r.correct is not None]
    cs = [r.c_score for r in done if r.c_score is not None]
    sims = [r.similarity for r in done if r.similarity is not None]
    runtimes = {m: float(np.mean(v)) for m in methods if (v := [r.runtimes[m] for r in done if m in r.runtimes])}
    return {
        "n_pairs": len(rows),
        "n_compared": len(done),
        "n_errors": len(rows) - len(done),
        "n_labelled": len(labelled),
        "n_correct": sum(bool(r.correct) for r in labelled),
        "accuracy": sum(bool(r.correct) for r in labelled) / len(labelled) if labelled else None,
        "n_same": sum(r.decision == SAME for r in done),
        "n_different": sum(r.decision == DIFFERENT for r in done),
        "mean_c_score": float(np.mean(cs)) if cs else None,
        "mean_similarity": float(np.mean(sims)) if sims else None,
        "mean_runtime_s": runtimes,
        "n_method_errors": sum(bool(r.method_errors) for r in done),
    }


# -- what to run ----------------------------------------------------------------------------
def read_batch_pairs(source: str | Path, images: str | Path | None = None, per_label: int | None = None,
                     limit: int | None = None) -> tuple[list[BatchPair], Path | None]:  # fmt: skip
    """The pairs of ``source`` and the folder their file names are relative to.

    ``source`` is a pairs CSV (``file_x,file_y`` with an optional ``same`` column; an empty
    ``same`` is an unknown label), an identities CSV (``file,identity``: every pair of its
    files, genuine when the identities match) or a folder of identity sub-folders (every
    pair of its photos, genuine when in the same sub-folder; names relative to the folder).
    CSV file names are relative to ``images``, else to the CSV's folder. ``per_label``
    keeps the first N genuine and the first N impostor pairs (and the first N unlabelled
    ones), ``limit`` the first N pairs after that."""
    src = Path(source)
    if src.is_dir():
        from .gallery import list_gallery

        items = list_gallery(src)
        names = [(p.relative_to(src).as_posix(), ident) for p, ident in items]
        pairs = [BatchPair(a, b, ia == ib) for (a, ia), (b, ib) in itertools.combinations(names, 2)]
        base: Path | None = src
    elif src.is_file():
        with open(src, newline="", encoding="utf-8-sig") as f:
            header = [c.strip() for c in f.readline().split(",")]
        if "identity" in header:
            labelled, _ = read_labelled_pairs(src)
            pairs = [BatchPair(p.file_x, p.file_y, p.same) for p in labelled]
        else:
            rows = _read_rows(src, ("file_x", "file_y"))
            pairs = []
            for i, r in enumerate(rows):
                if not r["file_x"] or not r["file_y"]:
                    raise DataError(f"{src}, line {i + 2}: empty file_x or file_y")
                same = _parse_same(r["same"], src, i + 2) if r.get("same") else None
                pairs.append(BatchPair(r["file_x"], r["file_y"], same))
        base = Path(images) if images is not None else src.parent
    else:
        raise DataError(f"{src}: no such pairs CSV, identities CSV or folder of identity sub-folders")
    if not pairs:
        raise DataError(f"{src}: no pairs (a folder needs at least two photos)")
    return _cap(pairs, per_label, limit), base


def _cap(pairs: Sequence[BatchPair], per_label: int | None, limit: int | None) -> list[BatchPair]:
    if per_label is not None:  # as core.evaluate.maps.pick_pairs, unlabelled pairs counted as a third label
        pairs = [p for want in (True, False, None) for p in [q for q in pairs if q.same is want][:per_label]]
    return list(pairs)[:limit] if limit is not None else list(pairs)


def _as_pairs(source: str | Path | Iterable[Any], images: str | Path | None, per_label: int | None,
              limit: int | None) -> tuple[list[BatchPair], Path | None, str]:  # fmt: skip
    if isinstance(source, (str, Path)):
        pairs, base = read_batch_pairs(source, images, per_label, limit)
        return pairs, base, str(source)
    out = []
    for p in source:  # LabelledPair, BatchPair or (file_x, file_y[, same]) tuples
        if isinstance(p, (LabelledPair, BatchPair)):
            out.append(BatchPair(p.file_x, p.file_y, p.same))
        else:
            t = tuple(p)
            out.append(BatchPair(str(t[0]), str(t[1]), None if len(t) < 3 or t[2] is None else bool(t[2])))
    if not out:
        raise DataError("no pairs to run")
    return _cap(out, per_label, limit), None if images is None else Path(images), "<pairs>"


# -- running ----------------------------------------------------------------------------------
def run_batch(
    runner: Any,
    source: str | Path | Iterable[Any],
    images: str | Path | None = None,
    methods: Sequence[str] = ("xmap3",),
    out: str | Path | None = None,
    preset: str = "fast",
    per_label: int | None = None,
    progress: Progress | None = None,
    limit: int | None = None,
    on_pair: Callable[[BatchRow, PairResult | None], Any] | None = None,
    **knobs: Any,
) -> BatchResult:
    """Verify every pair of ``source`` and run ``methods`` on it with ``runner``
    (``core.runner.Runner``); see ``read_batch_pairs`` for the sources, ``per_label`` and
    ``limit``. With ``out``, write ``out/pairs.csv``, ``out/batch.json`` and
    ``out/pairs/<index>.json`` (written as each pair finishes). ``progress(frac, message)``
    is called as in ``Runner.explain``; ``on_pair(row, result)`` after each pair (``result``
    is None for a pair that failed), e.g. to show rows as they come. A pair that cannot be
    compared becomes a row with its ``error``; a wrong method name or a missing model or
    calibration raises at once. A run into a folder replaces what an earlier run left there."""
    from .registry import explainer_spec

    methods = list(methods)
    for m in methods:
        explainer_spec(m)  # a typo fails before any work, not once per pair
    pairs, base, source_name = _as_pairs(source, images, per_label, limit)
    runner.embedder  # noqa: B018 (a missing model is reported before any image work)
    runner.threshold()  # likewise a missing calibration
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:  # a run replaces an earlier one in the same folder: no stale pair to reopen
        (out_dir / "pairs").mkdir(parents=True, exist_ok=True)
        for old in [out_dir / "pairs.csv", out_dir / "batch.json", *(out_dir / "pairs").glob("*.json")]:
            if old.is_file() and (old.parent == out_dir or old.stem.isdigit()):
                old.unlink()
    faces: dict[str, AlignedFace | str] = {}  # each image detected once; dropped after its last pair (the source image is big)
    uses = Counter(f for p in pairs for f in (p.file_x, p.file_y))

    def face(name: str) -> AlignedFace | str:
        if name not in faces:
            path = resolve(base, name, base) if base is not None else Path(name)
            try:
                faces[name] = runner.prepare(path, name)
            except XFVError as e:
                log.warning("%s", e)
                faces[name] = str(e)
            except Exception as e:  # an unreadable file that io did not type: one row's error, not the batch's end
                log.exception("could not read %s", name)
                faces[name] = f"{name}: {type(e).__name__}: {e}"
        return faces[name]

    result = BatchResult([], methods, getattr(runner.embedder, "name", None), preset, source_name, out_dir)
    n = len(pairs)
    knobs = {"preset": preset, **knobs}
    for i, p in enumerate(pairs):
        label = None if p.same is None else (SAME if p.same else DIFFERENT)
        row = BatchRow(i, p.file_x, p.file_y, label)
        if progress is not None:
            progress(i / n, f"pair {i + 1}/{n}: faces")
        t0 = time.perf_counter()
        a, b = face(p.file_x), face(p.file_y)
        res: PairResult | None = None
        if isinstance(a, str) or isinstance(b, str):
            row.error = a if isinstance(a, str) else str(b)
        else:
            sub = None if progress is None else _slice(progress, i / n, 1 / n, f"pair {i + 1}/{n}")
            try:
                res = runner.explain(FacePair(a, b), methods=methods, progress=sub, **knobs)
            except XFVError as e:
                row.error = str(e)
            except Exception as e:  # a bug on one pair must not lose the others
                log.exception("pair %d (%s, %s) failed", i, p.file_x, p.file_y)
                row.error = f"{type(e).__name__}: {e}"
        if res is not None:
            _fill(row, res, time.perf_counter() - t0)
            if out_dir is not None:
                _write_pair(out_dir, row, res)
        result.rows.append(row)
        if on_pair is not None:
            on_pair(row, res)
        for f in (p.file_x, p.file_y):
            uses[f] -= 1
            if uses[f] == 0 and not isinstance(faces.get(f), str):
                faces.pop(f, None)
    result.failed_files = {k: v for k, v in faces.items() if isinstance(v, str)}
    if out_dir is not None:
        write_rows(out_dir / "pairs.csv", result.rows, methods)
        meta = {"source": source_name, "images": None if base is None else str(base), "methods": methods, "preset": preset,
                "model": result.model, "knobs": jsonable({k: v for k, v in knobs.items() if k != "preset"}),
                "created": datetime.now(UTC).isoformat(timespec="seconds"), "summary": result.summary()}  # fmt: skip
        (out_dir / "batch.json").write_text(json.dumps(jsonable(meta), indent=1), encoding="utf-8")
    if progress is not None:
        progress(1.0, "done")
    return result


def _slice(progress: Progress, start: float, width: float, what: str) -> Progress:
    def report(frac: float, message: str) -> None:
        progress(start + width * min(1.0, max(0.0, frac)), f"{what}: {message}")

    return report


def _fill(row: BatchRow, res: PairResult, seconds: float) -> None:
    row.similarity, row.threshold, row.c_score = float(res.similarity), float(res.threshold), res.c_score
    row.decision = SAME if res.same else DIFFERENT
    row.correct = None if row.label is None else row.decision == row.label
    row.runtime_s = seconds
    row.runtimes = {e.method: float(e.runtime_s) for e in res.explanations}
    row.method_errors = {e.method: str(e.error) for e in res.explanations if not e.ok}


def _face_record(f: AlignedFace) -> dict[str, Any]:
    return {"landmarks": np.asarray(f.landmarks, float).tolist(), "box": np.asarray(f.box, float).tolist(),
            "transform": np.asarray(f.transform, float).tolist()}  # fmt: skip


def _write_pair(out_dir: Path, row: BatchRow, res: PairResult) -> Path:
    from .report import report_json

    data = report_json(res)
    data["batch_row"] = jsonable(row.to_dict())
    data["faces"] = [_face_record(f) for f in res.pair]
    path = pair_path(out_dir, row.index)
    path.write_text(json.dumps(data, allow_nan=False), encoding="utf-8")
    return path


# -- the saved folder -------------------------------------------------------------------------
def pair_path(out: str | Path, index: int) -> Path:
    return Path(out) / "pairs" / f"{int(index)}.json"


def write_rows(path: str | Path, rows: Sequence[BatchRow], methods: Sequence[str]) -> Path:
    """The rows as CSV: ``COLUMNS`` then ``runtime_<method>`` per method; empty cells for
    None, ``method_errors`` as a JSON object."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([*COLUMNS, *(f"runtime_{m}" for m in methods)])
        for r in rows:
            cells = [r.index, r.file_x, r.file_y, r.label, _num(r.similarity), _num(r.threshold), r.decision,
                     None if r.correct is None else int(r.correct), _num(r.c_score), _num(r.runtime_s), r.error,
                     json.dumps(r.method_errors) if r.method_errors else None]  # fmt: skip
            w.writerow(["" if c is None else c for c in cells] + [_num(r.runtimes.get(m)) or "" for m in methods])
    return path


def _num(v: float | None) -> str | None:
    return None if v is None else repr(float(v))  # repr round-trips a float exactly


def read_rows(path: str | Path) -> tuple[list[BatchRow], list[str]]:
    """The rows and method names of a ``pairs.csv`` written by ``write_rows``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; run a batch with an output folder first")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        methods = [c.removeprefix("runtime_") for c in reader.fieldnames or [] if c.startswith("runtime_") and c != "runtime_s"]
        rows = []
        for d in reader:

            def num(key: str, d: dict[str, str] = d) -> float | None:
                return float(d[key]) if d.get(key) else None

            rows.append(BatchRow(
                index=int(d["index"]), file_x=d["file_x"], file_y=d["file_y"], label=d.get("label") or None,
                similarity=num("similarity"), threshold=num("threshold"), decision=d.get("decision") or None,
                correct=None if not d.get("correct") else d["correct"] == "1", c_score=num("c_score"), runtime_s=num("runtime_s"),
                runtimes={m: v for m in methods if (v := num(f"runtime_{m}")) is not None}, error=d.get("error") or None,
                method_errors=json.loads(d["method_errors"]) if d.get("method_errors") else {},
            ))  # fmt: skip
    return rows, methods


def load_batch(out: str | Path) -> BatchResult:
    """A batch saved by ``run_batch(..., out=out)``, rows and all, without recomputing."""
    out = Path(out)
    rows, methods = read_rows(out / "pairs.csv")
    meta: dict[str, Any] = {}
    if (out / "batch.json").is_file():
        try:
            meta = json.loads((out / "batch.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable %s: %s", out / "batch.json", e)
    return BatchResult(rows, list(meta.get("methods", methods)), meta.get("model"), meta.get("preset"), meta.get("source"), out)


def load_pair_json(out: str | Path, index: int) -> dict[str, Any]:
    """The saved JSON of pair ``index`` (a ``core.report.report_json`` dict plus
    ``batch_row`` and ``faces``)."""
    path = pair_path(out, index)
    if not path.is_file():
        raise DataError(f"{path}: no saved result for pair {index} (it failed, or the batch was run without an output folder)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise DataError(f"{path}: not a readable pair result ({e})") from None


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
    from .report import array_from_record

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
    from .render import render_map, side_by_side
    from .text.verdict import verdict_sentence

    data = load_pair_json(out, index)
    res = _result_from_json(data)
    row_data = data.get("batch_row")
    row = None
    if isinstance(row_data, dict):
        row = BatchRow(**{k: v for k, v in row_data.items() if k in BatchRow.__dataclass_fields__})
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
    return PairView(int(index), row, res, faces, verdict_sentence(res), views)


# -- the table ----------------------------------------------------------------------------------
def filter_rows(rows: Iterable[BatchRow], decision: str | None = None, correct: bool | None = None, min_cscore: float | None = None,
                text: str | None = None, error: bool | None = None) -> list[BatchRow]:  # fmt: skip
    """The rows that pass every filter given: ``decision`` (``"same"``/``"different"``),
    ``correct`` (True/False; unlabelled and failed rows pass neither), ``min_cscore`` (rows
    without a C-Score do not pass), ``text`` (case-insensitive, in either file name or the
    error) and ``error`` (True: only failed pairs, False: only compared ones)."""
    needle = (text or "").strip().lower()
    out = []
    for r in rows:
        if decision and r.decision != decision:
            continue
        if correct is not None and r.correct is not correct:
            continue
        if min_cscore is not None and (r.c_score is None or r.c_score < min_cscore):
            continue
        if error is not None and r.ok == error:
            continue
        if needle and needle not in " ".join((r.file_x, r.file_y, r.error or "", *r.method_errors.values())).lower():
            continue
        out.append(r)
    return out


#: Table headers and the row attribute each shows (runtimes come after, one per method).
HEADERS = (("#", "index"), ("file_x", "file_x"), ("file_y", "file_y"), ("label", "label"), ("decision", "decision"),
           ("correct", "correct"), ("similarity", "similarity"), ("threshold", "threshold"), ("C-Score", "c_score"),
           ("time (s)", "runtime_s"), ("error", "error"))  # fmt: skip
_HEADER_KEYS = {h.lower(): k for h, k in HEADERS}


def sort_key_names(methods: Sequence[str] = ()) -> list[str]:
    """The keys ``sort_rows`` accepts: the row attributes and each method's name (its runtime)."""
    return [k for _, k in HEADERS] + list(methods)


def sort_rows(rows: Iterable[BatchRow], key: str = "index", descending: bool = False) -> list[BatchRow]:
    """Rows sorted by ``key``: a row attribute (``index``, ``similarity``, ``c_score``,
    ``correct``, ...), a table header (``"C-Score"``, ``"#"``) or a method name (its
    runtime). Missing values (failed pairs, no label) go last either way; ties keep the
    pair order."""
    rows = list(rows)
    k = _HEADER_KEYS.get(key.lower(), key)
    if k.endswith(" (s)"):
        k = k[: -len(" (s)")]
    attr = k if k in BatchRow.__dataclass_fields__ else None

    def value(r: BatchRow) -> Any:
        v = getattr(r, attr) if attr else r.runtimes.get(k)
        return v if not isinstance(v, float) or not math.isnan(v) else None

    present = [r for r in rows if value(r) is not None]
    missing = [r for r in rows if value(r) is None]
    present.sort(key=lambda r: r.index)
    present.sort(key=value, reverse=descending)  # stable: ties stay in pair order
    return present + sorted(missing, key=lambda r: r.index)


def rows_table(rows: Sequence[BatchRow], methods: Sequence[str] | None = None, digits: int = 4) -> tuple[list[str], list[list[Any]]]:
    """``(headers, values)`` for a dataframe: one line per row, numbers rounded to
    ``digits``, ``correct`` as ``"yes"``/``"no"``, missing values as None, then one
    ``<method> (s)`` runtime column per method (default: every method seen in the rows)."""
    if methods is None:
        methods = list(dict.fromkeys(m for r in rows for m in r.runtimes))
    headers = [h for h, _ in HEADERS] + [f"{m} (s)" for m in methods]
    table = []
    for r in rows:
        line: list[Any] = []
        for _, k in HEADERS:
            v = getattr(r, k)
            if k == "correct":
                v = None if v is None else ("yes" if v else "no")
            elif isinstance(v, float):
                v = round(v, digits)
            line.append(v)
        line += [None if (t := r.runtimes.get(m)) is None else round(t, 2) for m in methods]
        table.append(line)
    return headers, table


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary of ``batch_summary`` as aligned lines of text (for the CLI and the UI)."""
    s = summary
    acc = "n/a (no labelled pair)" if s["accuracy"] is None else f"{s['accuracy']:.4f} ({s['n_correct']} of {s['n_labelled']} labelled pairs)"
    cs = "n/a (no calibration)" if s["mean_c_score"] is None else f"{s['mean_c_score']:.4f}"
    lines = [
        f"pairs          {s['n_pairs']} ({s['n_compared']} compared, {s['n_errors']} failed)",
        f"decisions      {s['n_same']} same, {s['n_different']} different",
        f"accuracy       {acc}",
        f"mean C-Score   {cs}",
    ]
    for m, t in s["mean_runtime_s"].items():
        lines.append(f"{m + ' (s)':<14} {t:.2f} mean per pair")
    if s["n_method_errors"]:
        lines.append(f"method errors  on {s['n_method_errors']} pairs")
    return lines
