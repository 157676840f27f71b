"""Benchmark pair lists as they are published: LFW's ``pairs.txt`` and CALFW's and CPLFW's
pair lists, read into ``BatchPair``s whose file names are relative to the images folder.

- **LFW** ``pairs.txt`` (Huang et al. 2007, "Labeled Faces in the Wild: A Database for
  Studying Face Recognition in Unconstrained Environments", the README's section 3c), and
  ``pairsDevTrain.txt`` / ``pairsDevTest.txt``; XQLFW's ``xqlfw_pairs.txt`` (Knoche et al.
  2021, "Cross-Quality LFW") uses the same format. The first line is a header: either the
  number of sets and the matched pairs per set (``10\\t300``: each set is 300 matched lines
  then 300 mismatched lines) or a single number (``1100``: one set of N matched then N
  mismatched lines). A matched line ``name n1 n2`` is the pair ``name/name_%04d.jpg`` of
  ``n1`` and ``n2``; a mismatched line ``name1 n1 name2 n2`` the pair
  ``name1/name1_%04d.jpg``, ``name2/name2_%04d.jpg``. Each pair's ``fold`` is its set
  (0-based).
- **CALFW** ``pairs_CALFW.txt`` (Zheng et al. 2017, "Cross-Age LFW") and **CPLFW**
  ``pairs_CPLFW.txt`` (Zheng & Deng 2018, "Cross-Pose LFW"): no header, one ``filename
  label`` per line, two consecutive lines forming a pair; label 0 on both lines is two
  different people, a non-zero label (the same on both lines) the same person. The files
  are flat in the images folder (``Aaron_Eckhart_0001.jpg``, CPLFW ``Aaron_Eckhart_1.jpg``).
  ``fold`` stays None: what a non-zero label means beyond "same person" is not used.

Fields are separated by tabs or spaces; CRLF line ends and blank lines are tolerated (line
numbers in messages are the file's own). A file over ``MAX_PAIRS_BYTES`` is refused; text is
decoded as UTF-8 (a byte order mark dropped), else as Latin-1 with a warning. Every failure is
a ``DataError`` that names the file and, for a malformed line, its number and what was
expected. ``sniff`` tells these formats apart from a CSV (see ``core.batch.source``).
"""

from __future__ import annotations

import codecs
import logging
import re
from pathlib import Path

from ..data import read_bounded
from ..errors import DataError
from .rows import BatchPair

log = logging.getLogger(__name__)

#: Largest pair list read, in bytes.
MAX_PAIRS_BYTES = 50 * 2**20
#: Bytes ``sniff`` reads from the start of a file, and the lines it looks at.
SNIFF_BYTES = 64 * 1024
SNIFF_LINES = 20
#: What ``sniff`` returns for each format.
LFW, PAIR_LIST = "lfw", "pair_list"
#: CSV headers that mean "not a benchmark list" (the columns ``core.batch.source`` reads).
CSV_COLUMNS = frozenset({"file_x", "file_y", "file", "identity"})

_INT = re.compile(r"[0-9]+")
_LABEL = re.compile(r"[+-]?[0-9]+")
_SEPARATORS = re.compile(r"[,;|\s]+")
_MATCHED, _MISMATCHED = "a matched pair `name n1 n2`", "a mismatched pair `name1 n1 name2 n2`"
_LABELS = "label 0 on both lines: different people; the same non-zero label on both: the same person"

Line = tuple[int, list[str]]  # (line number, 1-based; its whitespace-separated fields)


def read_lfw_pairs(path: str | Path, name: str | None = None) -> list[BatchPair]:
    """The pairs of an LFW-format ``pairs.txt`` (also ``pairsDevTrain.txt``,
    ``pairsDevTest.txt``, XQLFW's ``xqlfw_pairs.txt``), in file order, ``fold`` set to
    each pair's set (0-based). ``name`` is what messages call the file (default: its path).
    The lines must match the header: their number and, within each set, the matched lines
    first and the mismatched ones after."""
    name = str(path) if name is None else name
    lines = _lines(_read_text(Path(path), name))
    if not lines:
        raise DataError(f"{name} is empty; expected a header line (`10\\t300` or `1100`) and one pair per line")
    sets, per_set = _lfw_header(lines[0], name)
    body, n = lines[1:], sets * 2 * per_set
    announced = f"its header (line {lines[0][0]}) announces {sets} set(s) of {per_set} matched then {per_set} mismatched pairs: {n} pairs"
    pairs = [_lfw_pair(fields, k, sets, per_set, name, line_no) for k, (line_no, fields) in enumerate(body[:n])]
    if len(body) > n:
        raise DataError(f"{name}, line {body[n][0]}: more pairs than the header announces; {announced}")
    if len(body) < n:
        end = (body[-1][0] if body else lines[0][0]) + 1
        raise DataError(f"{name}, line {end}: the file ends after {len(body)} of {n} pairs; {announced}")
    log.info("%s: %d LFW-format pairs in %d set(s)", name, len(pairs), sets)
    return pairs


def read_pair_list(path: str | Path, name: str | None = None) -> list[BatchPair]:
    """The pairs of a CALFW / CPLFW pair list (``pairs_CALFW.txt``, ``pairs_CPLFW.txt``):
    lines ``filename label``, two consecutive lines per pair; ``same`` is False for label 0
    and True for a non-zero label, which both lines of a pair must share. ``fold`` is None.
    ``name`` is what messages call the file (default: its path)."""
    name = str(path) if name is None else name
    lines = _lines(_read_text(Path(path), name))
    if not lines:
        raise DataError(f"{name} is empty; expected one `filename label` per line, two lines per pair")
    labelled = [(line_no, fields[0], _label(fields, name, line_no)) for line_no, fields in lines]
    if len(labelled) % 2:
        raise DataError(f"{name}, line {labelled[-1][0]}: this last line has no second line to make a pair with "
                        f"({len(labelled)} lines; a pair list has two lines per pair)")  # fmt: skip
    pairs = []
    for (first, file_x, a), (second, file_y, b) in zip(labelled[::2], labelled[1::2], strict=True):
        if a != b:
            raise DataError(f"{name}, line {second}: label {b}, but the pair's first line (line {first}) has label {a}; "
                            f"the two lines of a pair share one label ({_LABELS})")  # fmt: skip
        pairs.append(BatchPair(file_x, file_y, a != 0))
    log.info("%s: %d pairs of a CALFW/CPLFW pair list", name, len(pairs))
    return pairs


def sniff(path: str | Path) -> str | None:
    """Which benchmark format ``path`` is in, from its first lines: None when the first
    non-blank line is a CSV header naming ``file_x``, ``file_y``, ``file`` or ``identity``;
    ``"lfw"`` when it is one or two whole numbers (an LFW header); ``"pair_list"`` when each
    of the first ``SNIFF_LINES`` non-blank lines is exactly two fields, the second an
    integer (CALFW / CPLFW); else None (a CSV, or neither: the CSV reader's messages say
    what is wrong). Reads at most ``SNIFF_BYTES`` and never raises: a file it cannot read
    is None too."""
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES + 1)
    except OSError:
        return None
    if b"\x00" in head:  # UTF-16/32 or binary: the CSV reader says what it is
        return None
    text = _decode(head[:SNIFF_BYTES], str(path), quiet=True)
    if len(head) > SNIFF_BYTES:  # drop the line cut off at the limit
        text = text[: text.rfind("\n") + 1]
    lines = _lines(text)[:SNIFF_LINES]
    if not lines or _is_csv_header(lines[0][1]):
        return None
    first = lines[0][1]
    if len(first) in (1, 2) and all(_INT.fullmatch(f) for f in first):
        return LFW
    if all(len(fields) == 2 and _LABEL.fullmatch(fields[1]) for _, fields in lines):
        return PAIR_LIST
    return None


# -- helpers --------------------------------------------------------------------------------------
def _lfw_header(line: Line, name: str) -> tuple[int, int]:
    """``(sets, matched pairs per set)`` of an LFW header line: ``sets per_set`` or ``per_set``."""
    line_no, fields = line
    if len(fields) not in (1, 2) or not all(_INT.fullmatch(f) for f in fields):
        raise DataError(f"{name}, line {line_no}: expected a header of one or two whole numbers, `sets pairs_per_set` (e.g. "
                        f"`10\\t300`) or `pairs` (e.g. `1100`), got {' '.join(fields)[:80]!r}")  # fmt: skip
    sets, per_set = (1, int(fields[0])) if len(fields) == 1 else (int(fields[0]), int(fields[1]))
    if sets < 1 or per_set < 1:
        raise DataError(f"{name}, line {line_no}: the header announces no pairs ({' '.join(fields)}); expected at least one set of one pair")
    return sets, per_set


def _lfw_pair(fields: list[str], k: int, sets: int, per_set: int, name: str, line_no: int) -> BatchPair:
    """The ``k``-th pair (0-based) of an LFW file: matched or mismatched by its place in its set."""
    fold, place = divmod(k, 2 * per_set)
    matched = place < per_set
    form, n_fields, numbers = (_MATCHED, 3, (1, 2)) if matched else (_MISMATCHED, 4, (1, 3))
    where = f"set {fold + 1} of {sets} is {per_set} matched then {per_set} mismatched pairs"
    if len(fields) != n_fields:
        raise DataError(f"{name}, line {line_no}: expected {form}, got {len(fields)} field{'s' * (len(fields) != 1)} ({where})")
    for j in numbers:
        if not _INT.fullmatch(fields[j]):
            raise DataError(f"{name}, line {line_no}: expected {form}, but field {j + 1} ({fields[j][:40]!r}) is not an image number ({where})")
    for j in (0, 2) if not matched else (0,):
        if "/" in fields[j] or "\\" in fields[j] or fields[j] in (".", ".."):
            raise DataError(f"{name}, line {line_no}: {fields[j][:80]!r} is not a person's name (a folder of the images folder)")
    if matched:
        person, a, b = fields
        return BatchPair(_lfw_file(person, a), _lfw_file(person, b), True, fold)
    x, a, y, b = fields
    return BatchPair(_lfw_file(x, a), _lfw_file(y, b), False, fold)


def _lfw_file(person: str, number: str) -> str:
    """LFW's file of ``person``'s photo ``number``: ``name/name_%04d.jpg``."""
    return f"{person}/{person}_{int(number):04d}.jpg"


def _label(fields: list[str], name: str, line_no: int) -> int:
    """The label of a pair list's line ``filename label``."""
    if len(fields) != 2:
        raise DataError(f"{name}, line {line_no}: expected `filename label`, got {len(fields)} field{'s' * (len(fields) != 1)}")
    if not _LABEL.fullmatch(fields[1]):
        raise DataError(f"{name}, line {line_no}: the label {fields[1][:40]!r} is not an integer ({_LABELS})")
    return int(fields[1])


def _is_csv_header(fields: list[str]) -> bool:
    """Whether the fields of a first line are a CSV header with one of ``CSV_COLUMNS``."""
    return bool(CSV_COLUMNS & {c.strip("\"'").lower() for c in _SEPARATORS.split(" ".join(fields))})


def _read_text(path: Path, name: str) -> str:
    """The text of a pair list (see the module docstring for the size limit and encodings)."""
    data = read_bounded(path, name, MAX_PAIRS_BYTES, "a pair list", "is it the right file?")
    return _decode(data, name)


def _decode(data: bytes, name: str, quiet: bool = False) -> str:
    """``data`` as UTF-8 (its byte order mark dropped), else as Latin-1 (with a warning unless ``quiet``)."""
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        if not quiet:
            log.warning("%s is not UTF-8; reading it as Latin-1", name)
        return data.decode("latin-1")


def _lines(text: str) -> list[Line]:
    """The non-blank lines of ``text`` as (line number, fields split on tabs and spaces)."""
    return [(i, fields) for i, line in enumerate(text.split("\n"), 1) if (fields := line.split())]
