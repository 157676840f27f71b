"""The results store of a whole-benchmark run: a folder of Parquet files written in parts as work
finishes, to browse with DuckDB (``core.batch.duck``) and to resume after a crash.

    STORE/store.json           what was run (``settings``: pairs digest, methods, preset, model,
                               weights hash, threshold, knobs), whether it is complete, the summary
    STORE/pairs/part-*.parquet one row per pair (``pairs_schema``)
    STORE/maps/part-*.parquet  one row per pair and method: both faces' maps in float16
    STORE/faces/part-*.parquet one row per photo: its aligned crop (PNG) and geometry

Each part's three files share a name; ``pairs/`` is written last (write to a hidden file, then
rename), so a part counts only once its pair rows are there, and a run killed at any moment
loses at most the parts in flight. ``open_store(..., resume=True)`` keeps the parts that are
complete, removes the rest, and gives the pair ids already stored, so the run skips them. The
run's settings are also in each Parquet file's schema metadata (key ``xfv``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError
from .work import FAITH_SCORES, RANDOM, PartResult

log = logging.getLogger(__name__)

STORE_FILE = "store.json"
TABLES = ("pairs", "maps", "faces")
SCHEMA_VERSION = 1

MAPS_SCHEMA = pa.schema([("pair_id", pa.int64()), ("method", pa.string()), ("label", pa.string()), ("signed", pa.bool_()),
                         ("height", pa.int32()), ("width", pa.int32()), ("map_a", pa.binary()), ("map_b", pa.binary()),
                         ("text", pa.string()), ("scores", pa.string()), ("display", pa.string()), ("runtime_s", pa.float64()),
                         ("error", pa.string())])  # fmt: skip
FACES_SCHEMA = pa.schema([("photo", pa.string()), ("crop_png", pa.binary()), ("landmarks", pa.list_(pa.float32())),
                          ("box", pa.list_(pa.float32())), ("transform", pa.list_(pa.float64())), ("template", pa.string())])  # fmt: skip


def pairs_schema(methods: Sequence[str], faithfulness: bool) -> pa.Schema:
    """The pairs table: ids, files, fold, label, decision, similarity, threshold, C-Score,
    correctness, runtime, errors; per method its runtime, forward passes and region shares
    (``map<region, share>``); with ``faithfulness`` each method's and the random map's scores."""
    fields = [("pair_id", pa.int64()), ("file_x", pa.string()), ("file_y", pa.string()), ("fold", pa.int32()), ("label", pa.string()),
              ("decision", pa.string()), ("similarity", pa.float64()), ("threshold", pa.float64()), ("c_score", pa.float64()),
              ("correct", pa.bool_()), ("runtime_s", pa.float64()), ("error", pa.string()), ("method_errors", pa.string())]  # fmt: skip
    for m in methods:
        fields += [(f"runtime_{m}", pa.float64()), (f"passes_{m}", pa.int64()), (f"regions_{m}", pa.map_(pa.string(), pa.float64()))]
    if faithfulness:
        fields += [(f"faith_{m}_{s}", pa.float64()) for m in (*methods, RANDOM) for s in FAITH_SCORES]
    return pa.schema(fields)


@dataclass
class ParquetStore:
    """A results store being written (``open_store``)."""

    path: Path
    settings: dict[str, Any]
    done: set[int]
    photos: set[str]

    @property
    def methods(self) -> list[str]:
        return list(self.settings["methods"])

    def schema(self, table: str) -> pa.Schema:
        base = {"pairs": pairs_schema(self.methods, bool(self.settings.get("faithfulness"))), "maps": MAPS_SCHEMA, "faces": FACES_SCHEMA}[table]
        return base.with_metadata({"xfv": json.dumps(self.settings)})

    def write(self, part: PartResult) -> str:
        """Add one part (maps and new faces first, its pair rows last: the commit); a pair or
        photo already stored is not written twice. Gives the part's file name."""
        name = f"part-{uuid.uuid4().hex[:12]}.parquet"
        pairs = [r for r in part.pairs if r["pair_id"] not in self.done]
        if not pairs:
            return ""
        ids = {r["pair_id"] for r in pairs}
        maps = [r for r in part.maps if r["pair_id"] in ids]
        faces = []
        for f in part.faces:
            if f["photo"] not in self.photos:
                self.photos.add(f["photo"])
                faces.append(f)
        for table, rows in (("maps", maps), ("faces", faces), ("pairs", pairs)):
            if rows:
                _write_atomic(self.path / table / name, pa.Table.from_pylist(rows, schema=self.schema(table)))
        self.done |= ids
        return name

    def close(self, complete: bool, summary: dict[str, Any] | None = None) -> None:
        meta = _read_meta(self.path) or {}
        meta.update(complete=bool(complete), updated=_now(), n_stored=len(self.done))
        if summary is not None:
            meta["summary"] = summary
        _write_meta(self.path, meta)


def open_store(path: str | Path, settings: dict[str, Any], resume: bool = False) -> ParquetStore:
    """The store at ``path`` for a run with ``settings``. Without ``resume`` a store there is
    replaced (a folder that is not a store and not empty is refused); with ``resume`` it must
    have been run with the same settings, its complete parts are kept and the rest removed."""
    path = Path(path)
    meta = _read_meta(path)
    settings = json.loads(json.dumps(settings))  # as JSON gives it back
    if path.exists() and not path.is_dir():
        raise DataError(f"{path} is a file; give a folder for the results store")
    if meta is None and path.is_dir() and any(path.iterdir()):
        raise DataError(f"{path} is not empty and not a results store; give a new folder")
    if resume and meta is not None:
        then = meta.get("settings", {})
        changed = [k for k in settings if k not in ("images", "source") and then.get(k) != settings[k]]  # the pairs' digest says the rest
        if changed:
            raise DataError(f"cannot resume the store in {path}: it was run with other settings ({', '.join(changed)}); "
                            "run it with the same settings, or without --resume to replace it, or into another folder")  # fmt: skip
        _drop_incomplete_parts(path)
        done = set(int(i) for i in _column(path, "pairs", "pair_id"))
        photos = set(str(p) for p in _column(path, "faces", "photo"))
        log.info("resuming %s: %d pairs stored", path, len(done))
    else:
        if meta is not None:
            for t in TABLES:
                shutil.rmtree(path / t, ignore_errors=True)
        done, photos = set(), set()
        meta = {"schema_version": SCHEMA_VERSION, "created": _now()}
    for t in TABLES:
        (path / t).mkdir(parents=True, exist_ok=True)
    meta.update(settings=settings, complete=False, updated=_now())
    meta.pop("summary", None)
    _write_meta(path, meta)
    return ParquetStore(path, settings, done, photos)


def is_store(path: str | Path) -> bool:
    return (Path(path) / STORE_FILE).is_file()


def store_meta(path: str | Path) -> dict[str, Any]:
    meta = _read_meta(Path(path))
    if meta is None:
        raise DataError(f"{path}: not a results store (no {STORE_FILE}); run `python -m core batch ... --store parquet --out {path}` first")
    return meta


def read_table(path: str | Path, table: str = "pairs") -> pa.Table:
    """A whole table of the store, rows in pair order (``pairs``, ``maps``) or by photo."""
    files = _parts(Path(path), table)
    if not files:
        meta = store_meta(path)
        s = meta["settings"]
        schema = pairs_schema(s["methods"], bool(s.get("faithfulness"))) if table == "pairs" else {"maps": MAPS_SCHEMA, "faces": FACES_SCHEMA}[table]
        return schema.empty_table()
    t = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
    keys = {"pairs": [("pair_id", "ascending")], "maps": [("pair_id", "ascending"), ("method", "ascending")], "faces": [("photo", "ascending")]}
    return t.sort_by(keys[table])


def _parts(path: Path, table: str) -> list[Path]:
    d = path / table
    return sorted(p for p in d.glob("part-*.parquet")) if d.is_dir() else []


def _column(path: Path, table: str, column: str) -> list[Any]:
    return [v for f in _parts(path, table) for v in pq.read_table(f, columns=[column]).column(column).to_pylist()]


def _drop_incomplete_parts(path: Path) -> None:
    """Maps and faces of parts whose pair rows were never written, and half-written files."""
    committed = {p.name for p in _parts(path, "pairs")}
    for t in TABLES:
        d = path / t
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if p.name.startswith(".") or (t != "pairs" and p.name not in committed):
                log.info("removing %s (a part the interrupted run did not finish)", p)
                p.unlink(missing_ok=True)


def _write_atomic(target: Path, table: pa.Table) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, target)


def _read_meta(path: Path) -> dict[str, Any] | None:
    f = path / STORE_FILE
    if not f.is_file():
        return None
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{f} is not readable ({e}); run again into a new folder") from None
    return meta if isinstance(meta, dict) else None


def _write_meta(path: Path, meta: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f".{STORE_FILE}.tmp"
    tmp.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    os.replace(tmp, path / STORE_FILE)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
