"""Browsing a results store (``core.batch.parquet``) with DuckDB (Raasveldt and Mühleisen,
"DuckDB: an Embeddable Analytical Database", SIGMOD 2019): the pairs table filtered, sorted and
paged in SQL over the Parquet parts without loading them (``StoreQuery.page``), any stored pair
rebuilt with its maps without recomputing (``stored_pair``), and a summary per store
(``store_summary``): accuracy, EER, the C-Score distribution and, per method, the mean
faithfulness against the random map with a 95 % interval ("which map to trust on this dataset
and model").

The interval is the paired one of Student's t over pairs: for each pair, the method's deletion
area minus the random map's on the same pair (smaller is better: the decision changes sooner
when the pixels the map ranks first are hidden); a method whose interval lies below 0 beats the
random map on this store.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..types import Explanation, FacePair, PairResult
from .parquet import FACES_SCHEMA, MAPS_SCHEMA, STORE_FILE, store_meta
from .rows import DIFFERENT, SAME, BatchRow
from .work import FAITH_SCORES, RANDOM, face_from_row, map_from_bytes

#: Sort keys besides ``runtime_<method>``: the pairs table's own columns.
SORT_KEYS = ("pair_id", "similarity", "c_score", "correct", "decision", "label", "runtime_s", "file_x", "file_y", "fold", "threshold")


@dataclass
class StorePage:
    """One page of the filtered, sorted pairs: its rows, how many pass the filters, the total."""

    rows: list[BatchRow]
    n_filtered: int
    n_total: int


class StoreQuery:
    """SQL over one store's Parquet parts (a view per table, read lazily by DuckDB)."""

    def __init__(self, path: str | Path) -> None:
        import duckdb

        self.path = Path(path)
        self.meta = store_meta(self.path)
        self.methods: list[str] = list(self.meta["settings"]["methods"])
        self.con = duckdb.connect()
        self.con.execute("SET threads TO 2")
        self.con.execute("SET python_enable_replacements = false")  # a missing table is an error, never a Python variable of that name
        for t in ("pairs", "maps", "faces"):
            files = sorted((self.path / t).glob("part-*.parquet"))
            if not files and t != "pairs":  # no map or crop yet (every pair failed, or none had methods): an empty table
                self.con.register(t, {"maps": MAPS_SCHEMA, "faces": FACES_SCHEMA}[t].empty_table())
            elif files:
                glob = str(self.path.resolve() / t / "part-*.parquet").replace("'", "''")  # a literal: views take no parameters
                self.con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{glob}', union_by_name = true)")
            elif t == "pairs":
                raise DataError(f"{self.path}: the store has no pairs yet (a run that has not finished its first part)")

    def page(self, decision: str | None = None, correct: bool | None = None, min_cscore: float | None = None, text: str | None = None,
             error: bool | None = None, sort: str = "pair_id", descending: bool = False, page: int = 0,
             page_size: int = 50) -> StorePage:  # fmt: skip
        """Page ``page`` (0-based) of the pairs that pass the filters (as ``core.batch.filter_rows``:
        ``decision``, ``correct``, ``min_cscore``, ``text`` in a file name or the error, ``error``),
        sorted by ``sort`` (a column of ``SORT_KEYS``, ``index``, or a method name: its runtime);
        missing values last either way, ties in pair order."""
        where: list[str] = []
        args: list[Any] = []
        if decision:
            where.append("decision = ?")
            args.append(decision)
        if correct is not None:
            where.append("correct = ?")
            args.append(bool(correct))
        if min_cscore is not None:
            where.append("c_score >= ?")
            args.append(float(min_cscore))
        if error is not None:
            where.append("error IS NOT NULL" if error else "error IS NULL")
        if text and text.strip():
            where.append("(contains(lower(file_x), ?) OR contains(lower(file_y), ?) OR contains(lower(coalesce(error, '')), ?)"
                         " OR contains(lower(coalesce(method_errors, '')), ?))")  # fmt: skip
            args += [text.strip().lower()] * 4
        cond = f"WHERE {' AND '.join(where)}" if where else ""
        col = self._sort_column(sort)
        order = f'"{col}" {"DESC" if descending else "ASC"} NULLS LAST, pair_id'
        counts = self.con.execute(f"SELECT count(*), count(*) FILTER ({cond or 'WHERE true'}) FROM pairs", args).fetchone() or (0, 0)
        n_total, n_filtered = int(counts[0]), int(counts[1])
        q = f"SELECT {self._row_columns()} FROM pairs {cond} ORDER BY {order} LIMIT ? OFFSET ?"
        got = self.con.execute(q, [*args, int(page_size), int(page) * int(page_size)]).fetchall()
        return StorePage([self._row(r) for r in got], n_filtered, n_total)

    def _sort_column(self, sort: str) -> str:
        key = {"index": "pair_id", "#": "pair_id", "c-score": "c_score", "time (s)": "runtime_s"}.get(sort.lower(), sort)
        if key in SORT_KEYS:
            return key
        if key.removesuffix(" (s)") in self.methods:
            return f"runtime_{key.removesuffix(' (s)')}"
        raise DataError(f"cannot sort by {sort!r}; choose one of: {', '.join((*SORT_KEYS, *self.methods))}")

    def _row(self, r: tuple[Any, ...]) -> BatchRow:
        runtimes = {m: float(v) for m, v in zip(self.methods, r[12:], strict=True) if v is not None}
        return BatchRow(index=int(r[0]), file_x=r[1], file_y=r[2], label=r[3], similarity=r[4], threshold=r[5], decision=r[6],
                        correct=r[7], c_score=r[8], runtime_s=r[9], error=r[10], method_errors=json.loads(r[11]) if r[11] else {},
                        runtimes=runtimes)  # fmt: skip

    def _row_columns(self) -> str:
        """The columns ``_row`` reads, in its order."""
        return ", ".join(["pair_id", "file_x", "file_y", "label", "similarity", "threshold", "decision", "correct", "c_score", "runtime_s",
                          "error", "method_errors", *(f'"runtime_{m}"' for m in self.methods)])  # fmt: skip

    def row(self, pair_id: int) -> BatchRow:
        r = self.con.execute(f"SELECT {self._row_columns()} FROM pairs WHERE pair_id = ? LIMIT 1", [int(pair_id)]).fetchone()
        if r is None:
            raise DataError(f"no pair {pair_id} in the store {self.path}")
        return self._row(r)

    def close(self) -> None:
        self.con.close()


def stored_pair(path: str | Path, pair_id: int) -> PairResult:
    """The ``PairResult`` of a stored pair: its crops and geometry, every method's maps (float16
    as stored), words and scores, the verdict's numbers; nothing recomputed."""
    q = StoreQuery(path)
    try:
        row = q.row(pair_id)
        if not row.ok:
            raise DataError(f"pair {pair_id} could not be compared: {row.error}")
        faces = []
        for name in (row.file_x, row.file_y):
            cur = q.con.execute("SELECT * FROM faces WHERE photo = ? LIMIT 1", [name])
            cols = [d[0] for d in cur.description]
            got = cur.fetchone()
            if got is None:
                raise DataError(f"{path}: no crop of {name} in the store")
            faces.append(face_from_row(dict(zip(cols, got, strict=True))))
        passes_cols = ", ".join(f'"passes_{m}"' for m in q.methods)
        got_passes = q.con.execute(f"SELECT {passes_cols} FROM pairs WHERE pair_id = ? LIMIT 1", [int(pair_id)]).fetchone() if q.methods else ()
        passes = dict(zip(q.methods, got_passes or (), strict=False))
        cur = q.con.execute("SELECT * FROM maps WHERE pair_id = ?", [int(pair_id)])
        cols = [d[0] for d in cur.description]
        by_method = {r["method"]: r for r in (dict(zip(cols, t, strict=True)) for t in cur.fetchall())}
    finally:
        q.close()
    exps = []
    for m in q.methods:
        r = by_method.get(m)
        if r is None:
            continue
        maps = [
            x for x in (map_from_bytes(r["map_a"], r["height"], r["width"]), map_from_bytes(r["map_b"], r["height"], r["width"])) if x is not None
        ]
        display = json.loads(r["display"]) if r.get("display") else None
        scores = json.loads(r["scores"] or "{}")
        if passes.get(m) is not None:
            scores["forward_passes"] = passes[m]  # what the maps cost (cached passes included)
        extras = {"preset": q.meta["settings"].get("preset"), **({"display": display} if display else {})}
        exps.append(Explanation(method=m, label=r["label"], maps=maps, signed=bool(r["signed"]), scores=scores,
                                text=json.loads(r["text"] or "[]"), extras=extras,
                                runtime_s=float(r["runtime_s"] or 0.0), error=r["error"]))  # fmt: skip
    s = q.meta["settings"]
    return PairResult(pair=FacePair(faces[0], faces[1]), similarity=float(row.similarity or 0.0), threshold=float(row.threshold or 0.0),
                      same=row.decision == SAME, c_score=row.c_score, model=s.get("model") or "", weights_hash=s.get("weights_sha256") or "",
                      explanations=exps, params={"methods": s["methods"], **s.get("knobs", {}), "preset": s.get("preset")})  # fmt: skip


def store_summary(path: str | Path) -> dict[str, Any]:
    """Per store: pairs, compared, errors, accuracy, EER (labelled pairs of both kinds), the
    C-Score's quartiles, and per method its mean runtime and, when faithfulness was stored, the
    mean deletion and insertion areas and the paired difference to the random map with its
    95 % interval (``faithfulness``)."""
    from ..evaluate.verification import eer

    q = StoreQuery(path)
    try:
        con = q.con
        counts = con.execute("SELECT count(*), count(*) FILTER (WHERE error IS NULL) FROM pairs").fetchone() or (0, 0)
        n, done = int(counts[0]), int(counts[1])
        lab = con.execute("SELECT similarity, label FROM pairs WHERE error IS NULL AND label IS NOT NULL").fetchall()
        correct = con.execute("SELECT count(*) FILTER (WHERE correct), count(correct) FROM pairs").fetchone()
        cs = [float(v[0]) for v in con.execute("SELECT c_score FROM pairs WHERE c_score IS NOT NULL").fetchall()]
        out: dict[str, Any] = {"n_pairs": n, "n_compared": done, "n_errors": n - done, "n_labelled": len(lab)}
        out["accuracy"] = correct[0] / correct[1] if correct and correct[1] else None
        sims = np.array([s for s, _ in lab], float)
        same = np.array([lbl == SAME for _, lbl in lab])
        out["eer"] = eer(sims, same) if same.any() and (~same).any() else None
        out["c_score"] = {
            "n": len(cs),
            **(
                {k: float(v) for k, v in zip(("min", "q25", "median", "q75", "max"), np.quantile(cs, [0, 0.25, 0.5, 0.75, 1]), strict=True)}
                if cs
                else {}
            ),
        }
        out["n_same"] = int(con.execute("SELECT count(*) FROM pairs WHERE decision = ?", [SAME]).fetchone()[0])  # type: ignore[index]
        out["n_different"] = int(con.execute("SELECT count(*) FROM pairs WHERE decision = ?", [DIFFERENT]).fetchone()[0])  # type: ignore[index]
        out["mean_runtime_s"] = {}
        for m in q.methods:
            v = con.execute(f'SELECT avg("runtime_{m}") FROM pairs').fetchone()
            if v and v[0] is not None:
                out["mean_runtime_s"][m] = float(v[0])
        out["faithfulness"] = _faithfulness(q) if q.meta["settings"].get("faithfulness") else None
    finally:
        q.close()
    return out


def _faithfulness(q: StoreQuery) -> dict[str, dict[str, Any]]:
    from scipy import stats

    out: dict[str, dict[str, Any]] = {}
    for m in q.methods:
        cols = f'"faith_{m}_deletion_auc", "faith_{RANDOM}_deletion_auc", "faith_{m}_insertion_auc", "faith_{RANDOM}_insertion_auc"'
        got = np.array([r for r in q.con.execute(f"SELECT {cols} FROM pairs").fetchall() if None not in r], float)
        if not len(got):
            continue
        rec: dict[str, Any] = {"n": len(got)}
        for k, (i, j) in (("deletion_auc", (0, 1)), ("insertion_auc", (2, 3))):
            d = got[:, i] - got[:, j]
            half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")
            rec[k] = float(got[:, i].mean())
            rec[f"{k}_random"] = float(got[:, j].mean())
            rec[f"{k}_minus_random"] = float(d.mean())
            rec[f"{k}_ci95"] = [float(d.mean() - half), float(d.mean() + half)]
        out[m] = rec
    return out


def summary_text(summary: dict[str, Any]) -> list[str]:
    """The summary as aligned lines for the CLI."""
    s = summary
    acc = "n/a (no labelled pair)" if s.get("accuracy") is None else f"{s['accuracy']:.4f}"
    e = "n/a (needs labelled pairs of both kinds)" if s.get("eer") is None else f"{s['eer']:.4f}"
    lines = [f"pairs          {s['n_pairs']} ({s['n_compared']} compared, {s['n_errors']} failed)", f"accuracy       {acc}", f"EER            {e}"]
    c = s.get("c_score") or {}
    lines.append(
        "C-Score        n/a (no calibration)"
        if not c.get("n")
        else f"C-Score        median {c['median']:.3f} (quartiles {c['q25']:.3f}-{c['q75']:.3f})"
    )
    for m, t in (s.get("mean_runtime_s") or {}).items():
        lines.append(f"{m + ' (s)':<14} {t:.2f} mean per pair")
    for m, f in (s.get("faithfulness") or {}).items():
        lo, hi = f["deletion_auc_ci95"]
        verdict = "beats the random map" if hi < 0 else ("worse than the random map" if lo > 0 else "not distinguishable from the random map")
        lines.append(f"{m + ' deletion':<14} {f['deletion_auc']:.4f} vs random {f['deletion_auc_random']:.4f}: "
                     f"difference {f['deletion_auc_minus_random']:+.4f} [{lo:+.4f}, {hi:+.4f}] 95 %, {verdict} (n={f['n']})")  # fmt: skip
    return lines


__all__ = ["FAITH_SCORES", "SORT_KEYS", "STORE_FILE", "StorePage", "StoreQuery", "store_summary", "stored_pair", "summary_text"]
