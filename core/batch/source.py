"""What a batch runs: the pairs of a pairs CSV, an identities CSV, a benchmark pair list
(``core.batch.formats``) or a folder of identity sub-folders (or of given pairs), and keeping
a rooted batch inside its upload folder."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..data import LabelledPair, _parse_same, labelled_pairs_from_table, missing_columns, read_csv
from ..errors import DataError
from .formats import LFW, read_lfw_pairs, read_pair_list, sniff
from .rows import BatchPair


def read_batch_pairs(source: str | Path, images: str | Path | None = None, per_label: int | None = None,
                     limit: int | None = None, root: str | Path | None = None) -> tuple[list[BatchPair], Path | None]:  # fmt: skip
    """The pairs of ``source`` and the folder their file names are relative to.

    ``source`` is a pairs CSV (``file_x,file_y`` with an optional ``same`` column; an empty
    ``same`` is an unknown label), an identities CSV (``file,identity``: every pair of its
    files, genuine when the identities match) or a folder of identity sub-folders (every
    pair of its photos, genuine when in the same sub-folder; names relative to the folder)
    or a published benchmark pair list, told from a CSV by ``core.batch.formats.sniff``:
    LFW's ``pairs.txt`` (also ``pairsDevTrain.txt``, ``pairsDevTest.txt`` and XQLFW's
    ``xqlfw_pairs.txt``; each pair's ``fold`` is its set) or CALFW's / CPLFW's
    ``pairs_CALFW.txt`` / ``pairs_CPLFW.txt``. File names of a CSV or a pair list are
    relative to ``images``, else to the file's folder. ``per_label`` keeps the first N
    genuine and the first N impostor pairs (and the first N unlabelled ones), ``limit`` the
    first N pairs after that. CSVs are read by ``core.data.read_csv``
    (any common encoding; binary data, huge cells and duplicate columns refused).

    With ``root`` (an upload folder), ``source`` and ``images`` must be inside it and error
    messages name the files relative to it; the pairs' own files are checked when the batch
    runs (``run_batch(..., root=...)``)."""
    src = Path(source)
    root_dir = _root(root)
    if root_dir is None:
        pairs, base = _read_source(src, images, str(src), None)
    else:
        for what, p in (("the pairs file", src), ("the images folder", None if images is None else Path(images))):
            if p is not None and not _resolved(p).is_relative_to(root_dir):
                raise DataError(f"{what} is not in your upload")
        try:
            pairs, base = _read_source(src, images, _upload_name(src, root_dir, "the pairs file"), root_dir)
        except DataError as e:  # e.g. a gallery folder's message: never the upload folder's absolute path
            raise DataError(_Scrub(root, root_dir)(str(e))) from None
    return _cap(pairs, per_label, limit), base


def _read_source(src: Path, images: str | Path | None, label: str, root: Path | None) -> tuple[list[BatchPair], Path]:
    if src.is_dir():
        from ..gallery import list_gallery

        items = list_gallery(src)
        if root is not None:  # a sub-folder that is a symlink out is not part of the upload: its files are not even named
            items = [(p, ident) for p, ident in items if _resolved(p.parent).is_relative_to(root)]
        names = [(p.relative_to(src).as_posix(), ident) for p, ident in items]
        pairs = [BatchPair(a, b, ia == ib) for (a, ia), (b, ib) in itertools.combinations(names, 2)]
        base = src
    elif src.is_file() and (kind := sniff(src)) is not None:
        pairs = read_lfw_pairs(src, label) if kind == LFW else read_pair_list(src, label)
        base = Path(images) if images is not None else src.parent
    elif src.is_file():
        table = read_csv(src, (), label)
        if "identity" in table.columns:
            labelled, _ = labelled_pairs_from_table(table)
            pairs = [BatchPair(p.file_x, p.file_y, p.same) for p in labelled]
        else:
            missing = [c for c in ("file_x", "file_y") if c not in table.columns]
            if missing:
                raise missing_columns(label, table.columns, missing, "a header with file_x, file_y and optionally same (or file, identity)")
            pairs = []
            for r, line in zip(table.rows, table.lines, strict=True):
                if not r["file_x"] or not r["file_y"]:
                    raise DataError(f"{label}, line {line}: empty file_x or file_y")
                same = _parse_same(r["same"], label, line) if r.get("same") else None
                pairs.append(BatchPair(r["file_x"], r["file_y"], same))
        base = Path(images) if images is not None else src.parent
    else:
        raise DataError(f"{label}: no such pairs CSV, identities CSV or folder of identity sub-folders")
    if not pairs:
        raise DataError(f"{label}: no pairs (a folder needs at least two photos)")
    return pairs, base


def _root(root: str | Path | None) -> Path | None:
    if root is None:
        return None
    r = _resolved(Path(root))
    if not r.is_dir():
        raise DataError("the upload folder is missing; upload the files again")
    return r


def _resolved(p: Path) -> Path:
    try:
        return p.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return p.absolute()


def _upload_name(p: Path, root: Path, default: str) -> str:
    """``p`` as the user knows it: relative to the upload folder (never its absolute path)."""
    for q in (p.absolute(), _resolved(p)):
        if q.is_relative_to(root):
            return q.relative_to(root).as_posix()
    return default


def _cap(pairs: Sequence[BatchPair], per_label: int | None, limit: int | None) -> list[BatchPair]:
    if per_label is not None:  # as core.evaluate.maps.pick_pairs, unlabelled pairs counted as a third label
        pairs = [p for want in (True, False, None) for p in [q for q in pairs if q.same is want][:per_label]]
    return list(pairs)[:limit] if limit is not None else list(pairs)


def _as_pairs(source: str | Path | Iterable[Any], images: str | Path | None, per_label: int | None, limit: int | None,
              root: Path | None) -> tuple[list[BatchPair], Path | None, str]:  # fmt: skip
    if isinstance(source, (str, Path)):
        pairs, base = read_batch_pairs(source, images, per_label, limit, root)
        return pairs, base, str(source)
    out = []
    for p in source:  # LabelledPair, BatchPair or (file_x, file_y[, same]) tuples
        if isinstance(p, BatchPair):  # frozen: kept as it is, fold included
            out.append(p)
        elif isinstance(p, LabelledPair):
            out.append(BatchPair(p.file_x, p.file_y, p.same))
        else:
            t = tuple(p)
            out.append(BatchPair(str(t[0]), str(t[1]), None if len(t) < 3 or t[2] is None else bool(t[2])))
    if not out:
        raise DataError("no pairs to run")
    base = None if images is None else Path(images)
    if root is not None:
        if base is not None and not _resolved(base).is_relative_to(root):
            raise DataError("the images folder is not in your upload")
        base = base or root
    return _cap(out, per_label, limit), base, "<pairs>"


class _Scrub:
    """Removes the upload folder's absolute path from messages (a rooted batch never shows it)."""

    def __init__(self, root: str | Path | None, resolved: Path | None) -> None:
        self.paths = sorted({str(Path(root).absolute()), str(resolved)}, key=len, reverse=True) if root is not None and resolved is not None else []

    def __call__(self, text: str) -> str:
        for p in self.paths:
            text = text.replace(p + "/", "").replace(p, "<upload>")
        return text
