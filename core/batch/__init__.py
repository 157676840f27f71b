"""A whole set of pairs at once: verification and explanation maps of every pair of a pairs
CSV, an identities CSV, a published benchmark pair list (LFW's ``pairs.txt``, XQLFW's,
CALFW's and CPLFW's) or a folder of identity sub-folders, as a table to sort and filter,
and a folder that reopens any row's maps later without recomputing them.

This is the batch path behind ``python -m core batch`` and the app's Explore tab (the
"explorer" and "viewer" of the X-Map web platform of Knoche et al., for a user's own
data). Each image is detected and aligned once however many pairs it is in (and embedded
once, with a runner whose ``explain`` takes ``embeddings``); a pair of files that comes
again is not run again but copies its first row; a pair that fails (no face, unreadable
file) becomes a row with its error and the batch goes on. With ``root`` (an upload
folder) no photo outside it is read, and no message tells whether one exists.

The output folder holds ``pairs.csv`` (one row per pair, written as each finishes; text
cells escaped against spreadsheet formulas), ``batch.json`` (what was run, whether it is
complete, and the summary) and ``pairs/<index>.json`` per pair: the JSON audit report of
``core.report.report_json`` (exact float32 maps, lossless crops) plus the row and the
faces' geometry, from which ``pair_result`` rebuilds the ``PairResult`` (a repeated pair's
JSON points to its first one's). A run that stopped resumes with ``resume=True``.

The package: ``rows`` (the rows, the summary and the table), ``source`` (what to run),
``formats`` (the benchmark pair lists), ``run`` (``run_batch``), ``store`` (the saved
folder) and ``view`` (reopening a saved pair).
"""

from .formats import read_lfw_pairs, read_pair_list, sniff
from .rows import (
    COLUMNS,
    DIFFERENT,
    HEADERS,
    SAME,
    BatchPair,
    BatchResult,
    BatchRow,
    batch_summary,
    filter_rows,
    rows_table,
    sort_key_names,
    sort_rows,
    summary_lines,
)
from .run import COST_KNOBS, Progress, _takes_embeddings, run_batch
from .source import read_batch_pairs
from .store import TEXT_COLUMNS, _Store, _write_pair, load_batch, load_pair_json, pair_path, read_rows, write_rows
from .view import MapView, PairView, _result_from_json, pair_result, pair_view

__all__ = [
    "COLUMNS",
    "COST_KNOBS",
    "DIFFERENT",
    "HEADERS",
    "SAME",
    "TEXT_COLUMNS",
    "BatchPair",
    "BatchResult",
    "BatchRow",
    "MapView",
    "PairView",
    "Progress",
    "_Store",
    "_result_from_json",
    "_takes_embeddings",
    "_write_pair",
    "batch_summary",
    "filter_rows",
    "load_batch",
    "load_pair_json",
    "pair_path",
    "pair_result",
    "pair_view",
    "read_batch_pairs",
    "read_lfw_pairs",
    "read_pair_list",
    "read_rows",
    "rows_table",
    "run_batch",
    "sniff",
    "sort_key_names",
    "sort_rows",
    "summary_lines",
    "write_rows",
]
