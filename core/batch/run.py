"""Running a batch: ``run_batch`` verifies and explains every pair, each photo detected (and
embedded) once, a repeated pair copied, a failed pair a row with its error."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError, XFVError
from ..explainers.knobs import canonical_knobs
from ..types import AlignedFace, FacePair, PairResult, jsonable
from .rows import DIFFERENT, SAME, BatchPair, BatchResult, BatchRow
from .source import _as_pairs, _root, _Scrub
from .store import _resumable, _Store
from .view import pair_result
from .work import align_photo

if TYPE_CHECKING:
    from ..runner import Runner

log = logging.getLogger(__name__)

Progress = Callable[[float, str], Any]


@dataclass
class _Done:
    """The first row of a pair of files run in this batch (or kept by a resume), which the
    repeats of that pair copy; ``result`` is None when it failed or was kept from disk."""

    index: int
    row: BatchRow
    result: PairResult | None


def run_batch(
    runner: Runner,
    source: str | Path | Iterable[Any],
    images: str | Path | None = None,
    methods: Sequence[str] = ("xmap3",),
    out: str | Path | None = None,
    preset: str = "fast",
    per_label: int | None = None,
    progress: Progress | None = None,
    limit: int | None = None,
    on_pair: Callable[[BatchRow, PairResult | None], Any] | None = None,
    resume: bool = False,
    root: str | Path | None = None,
    **knobs: Any,
) -> BatchResult:
    """Verify every pair of ``source`` and run ``methods`` on it with ``runner``
    (``core.runner.Runner``); see ``read_batch_pairs`` for the sources, ``per_label`` and
    ``limit``. ``progress(frac, message)`` is called as in ``Runner.explain``;
    ``on_pair(row, result)`` after each pair run (``result`` is None for a pair that
    failed), e.g. to show rows as they come. A pair that cannot be compared becomes a row
    with its ``error``; a wrong method name or a missing model or calibration raises at once.

    Each photo is detected (and, with a runner that takes ``embeddings``, embedded) once
    per run; a pair of files that comes again is not run again: its row copies the first
    one's (runtimes included) and its saved JSON points to the first one's.

    With ``out``, the batch is saved as it goes: ``out/batch.json`` (what was run,
    ``"complete": false`` until the end, then the summary), ``out/pairs.csv`` (a row
    written and flushed as each pair finishes) and ``out/pairs/<index>.json``. A run that
    stops (an interrupt, a cancellation, a crash) leaves the rows it finished; with
    ``resume=True`` a run into the same folder with the same pairs, methods, preset, model,
    threshold and knobs keeps them (pairs whose JSON is there, and failed pairs) and runs
    only the rest (``on_pair`` is called only for those); other settings are refused.
    Without ``resume`` a run into a folder replaces what an earlier run left there.

    With ``root`` (an upload folder), every photo must resolve (symlinks followed) to a
    file inside it; any other name (absolute, ``../``, a symlink out, missing) gives the
    row error ``"<name>: not in your upload"``, and no message names the folder itself."""
    from ..registry import explainer_spec

    methods = list(methods)
    for m in methods:
        explainer_spec(m)  # a typo fails before any work, not once per pair
    root_dir = _root(root)
    pairs, base, source_name = _as_pairs(source, images, per_label, limit, root_dir)
    runner.embedder  # noqa: B018 (a missing model is reported before any image work)
    threshold = runner.threshold()  # likewise a missing calibration
    knobs = {"preset": preset, **canonical_knobs(knobs)}
    model = runner.embedder.name
    settings = _settings(pairs, base, methods, preset, model, threshold, knobs)
    out_dir = Path(out) if out is not None else None
    kept = _resumable(out_dir, settings, pairs) if out_dir is not None and resume else {}
    result = BatchResult([], methods, model, preset, source_name, out_dir)
    n = len(pairs)
    keys = [(p.file_x, p.file_y) for p in pairs]
    cache: dict[tuple[str, str], _Done] = {}
    for i in sorted(kept):
        cache.setdefault(keys[i], _Done(i, kept[i], None))
    runs = _first_runs(keys, kept, cache)
    key_uses = Counter(keys[i] for i in range(n) if i not in kept)  # a copy is dropped after its pair's last row
    face_uses = Counter(f for i in runs for f in keys[i])  # a face after its last run (the source image is big)
    faces: dict[str, AlignedFace | str] = {}
    embeddings: dict[str, np.ndarray] = {}
    takes_embeddings = _takes_embeddings(runner)
    hide = _Scrub(root, root_dir)
    meta = {"source": source_name, **settings, "cost_knobs": jsonable({k: knobs[k] for k in COST_KNOBS if k in knobs})}
    store = _Store(out_dir, methods, meta, [kept[i] for i in sorted(kept)]) if out_dir else None
    if kept:
        log.info("resuming %s: %d of %d pairs kept, %d to run", out_dir, len(kept), n, n - len(kept))

    def face(name: str) -> AlignedFace | str:
        if name not in faces:
            faces[name] = align_photo(runner, name, base, root_dir, hide)
        return faces[name]

    def embedded(a: AlignedFace, b: AlignedFace, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
        for nm, f in zip(names, (a, b), strict=True):
            if nm not in embeddings:  # one face per call: the same bits whichever pair it first came in (a resume equals a full run)
                embeddings[nm] = np.asarray(runner.embed([f])[0], np.float32)
        return embeddings[names[0]], embeddings[names[1]]

    complete = False
    try:
        for i, p in enumerate(pairs):
            if i in kept:
                result.rows.append(kept[i])
                continue
            label = None if p.same is None else (SAME if p.same else DIFFERENT)
            row = BatchRow(i, p.file_x, p.file_y, label)
            t0 = time.perf_counter()
            res: PairResult | None = None
            hit = cache.get(keys[i])
            if hit is not None:
                if progress is not None:
                    progress(i / n, f"pair {i + 1}/{n}: same files as pair {hit.index + 1}")
                _copy(row, hit.row)
                if hit.result is None and hit.row.ok and on_pair is not None and out_dir is not None:
                    with contextlib.suppress(DataError):  # kept by a resume: read back once, for on_pair
                        hit.result = pair_result(out_dir, hit.index)
                res = hit.result if row.ok else None
                if store is not None and row.ok:
                    store.copy(row, hit.index)
            else:
                if progress is not None:
                    progress(i / n, f"pair {i + 1}/{n}: faces")
                a, b = face(p.file_x), face(p.file_y)
                if isinstance(a, str) or isinstance(b, str):
                    row.error = a if isinstance(a, str) else str(b)
                else:
                    sub = None if progress is None else _slice(progress, i / n, 1 / n, f"pair {i + 1}/{n}")
                    extra: dict[str, Any] = {"embeddings": embedded(a, b, keys[i])} if takes_embeddings else {}
                    try:
                        res = runner.explain(FacePair(a, b), methods=methods, progress=sub, **extra, **knobs)
                    except XFVError as e:
                        row.error = hide(str(e))
                    except Exception as e:  # a bug on one pair must not lose the others (BaseException, e.g. Cancelled, ends the batch)
                        log.exception("pair %d (%s, %s) failed", i, p.file_x, p.file_y)
                        row.error = f"{type(e).__name__}: {hide(str(e))}"
                if res is not None:
                    _fill(row, res, time.perf_counter() - t0)
                    row.method_errors = {m: hide(e) for m, e in row.method_errors.items()}
                    if store is not None:
                        store.pair(row, res)
                cache[keys[i]] = _Done(i, row, None if res is None or key_uses[keys[i]] <= 1 else _without_sources(res))
                for f in keys[i]:
                    face_uses[f] -= 1
                    if face_uses[f] <= 0 and not isinstance(faces.get(f), str):
                        faces.pop(f, None)
                        embeddings.pop(f, None)
            if store is not None:
                store.row(row)
            result.rows.append(row)
            key_uses[keys[i]] -= 1
            if key_uses[keys[i]] <= 0:
                cache.pop(keys[i], None)
            if on_pair is not None:
                on_pair(row, res)
        complete = True
    finally:  # also on KeyboardInterrupt or Cancelled: the rows written so far stay a valid pairs.csv
        result.failed_files = {k: v for k, v in faces.items() if isinstance(v, str)}
        result.complete = complete
        if store is not None:
            store.close(result.rows if complete else None, result.summary() if complete else None)
    if progress is not None:
        progress(1.0, "done")
    return result


def _first_runs(keys: Sequence[tuple[str, str]], kept: dict[int, BatchRow], cache: dict[tuple[str, str], _Done]) -> list[int]:
    """The rows that will run (the others are kept or copies): each pair's first row left."""
    seen = set(cache)
    runs = []
    for i, k in enumerate(keys):
        if i not in kept and k not in seen:
            seen.add(k)
            runs.append(i)
    return runs


def _without_sources(res: PairResult) -> PairResult:
    """``res`` without the faces' source images (the big part), for the copies to share."""
    faces = [replace(f, source=None) for f in res.pair]
    return replace(res, pair=FacePair(faces[0], faces[1]))


def _copy(row: BatchRow, first: BatchRow) -> None:
    """``row`` (the same files as ``first``) as a copy of ``first``'s outcome, its own label."""
    for k in ("similarity", "threshold", "decision", "c_score", "runtime_s", "error"):
        setattr(row, k, getattr(first, k))
    row.runtimes, row.method_errors = dict(first.runtimes), dict(first.method_errors)
    row.correct = None if row.label is None or row.decision is None else row.decision == row.label


def _takes_embeddings(runner: Runner) -> bool:
    """Whether ``runner.explain`` takes the pair's ``embeddings`` (so a photo in several
    pairs is embedded once); a runner without it embeds each pair itself."""
    import inspect

    try:
        return "embeddings" in inspect.signature(runner.explain).parameters
    except (TypeError, ValueError):
        return False


#: Knobs that change what a run costs, never its results: a resume may change them.
COST_KNOBS = ("batch_size",)


def _settings(pairs: Sequence[BatchPair], base: Path | None, methods: list[str], preset: str, model: str | None, threshold: float,
              knobs: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """What a resume must find the same (as JSON gives it back)."""
    digest = hashlib.sha256(json.dumps([[p.file_x, p.file_y, p.same] for p in pairs]).encode()).hexdigest()
    s = {"images": None if base is None else str(base), "methods": methods, "preset": preset, "model": model,
         "threshold": float(threshold), "knobs": {k: v for k, v in knobs.items() if k not in ("preset", *COST_KNOBS)},
         "n_pairs": len(pairs), "pairs_sha256": digest}  # fmt: skip
    return json.loads(json.dumps(jsonable(s)))


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
